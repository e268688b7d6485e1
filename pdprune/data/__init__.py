"""Datasets: one module per family; every builder returns a DataBundle (see bundle.py).

Builders are imported on use, so that checking a config (which needs only locate.py) does not
load torch or scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .bundle import DataBundle

BUILDERS = {  # dataset name -> "module:function"
    "digits": "digits:build_digits",
    "fashion_mnist": "fashion_mnist:build_fashion_mnist",
    "synthetic": "synthetic:build_synthetic",
}


def build_data(cfg: DictConfig, seed: int) -> DataBundle:
    """The dataset named by cfg.name; `seed` drives the training-set shuffle."""
    module, function = BUILDERS[cfg.name].split(":")
    return getattr(import_module(f".{module}", __name__), function)(cfg, seed)
