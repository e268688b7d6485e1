"""Datasets: one module per family; every builder returns a DataBundle."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from .bundle import DataBundle, TensorLoader
from .digits import build_digits
from .fashion_mnist import build_fashion_mnist
from .synthetic import build_synthetic

BUILDERS: dict[str, Callable[[DictConfig, int], DataBundle]] = {
    "digits": build_digits,
    "fashion_mnist": build_fashion_mnist,
    "synthetic": build_synthetic,
}


def build_data(cfg: DictConfig, seed: int) -> DataBundle:
    """The dataset named by cfg.name; `seed` drives the training-set shuffle."""
    return BUILDERS[cfg.name](cfg, seed)


__all__ = ["DataBundle", "TensorLoader", "build_data"]
