"""Fashion-MNIST from IDX files: 60k training and 10k test images, 28x28, 10 classes."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from .bundle import DataBundle
from .idx import build_idx_dataset, read_idx

MEAN, STD = 0.2860, 0.3530  # of the 60k training images, in [0, 1]


def build_fashion_mnist(cfg: DictConfig, seed: int,
                        device: torch.device | None = None) -> DataBundle:
    return build_idx_dataset(cfg, seed, device or torch.device("cpu"), mean=MEAN, std=STD)


__all__ = ["MEAN", "STD", "build_fashion_mnist", "read_idx"]
