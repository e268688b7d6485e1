"""Datasets: one module per family; every builder returns a DataBundle (see bundle.py).

Builders are imported on use, so that checking a config (which needs only locate.py) does not
load torch or scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from .bundle import DataBundle

BUILDERS = {  # dataset name -> "module:function"
    "digits": "digits:build_digits",
    "fashion_mnist": "fashion_mnist:build_fashion_mnist",
    "mnist": "mnist:build_mnist",
    "cifar10": "cifar:build_cifar",
    "cifar100": "cifar:build_cifar",
    "imagenet": "imagenet:build_imagenet",
    "synthetic": "synthetic:build_synthetic",
}


def build_data(cfg: DictConfig, seed: int, device: torch.device | str | None = None) -> DataBundle:
    """The dataset named by cfg.name, its batches produced on `device` (default: the CPU);
    `seed` drives the training set's shuffle and augmentation."""
    import torch

    from ..errors import ConfigError

    if cfg.name not in BUILDERS:
        raise ConfigError("dataset.name", cfg.name,
                          f"no such dataset (choose from {', '.join(BUILDERS)})")
    module, function = BUILDERS[cfg.name].split(":")
    builder = getattr(import_module(f".{module}", __name__), function)
    return builder(cfg, seed, torch.device(device) if device is not None else torch.device("cpu"))
