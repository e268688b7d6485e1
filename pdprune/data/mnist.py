"""MNIST handwritten digits from IDX files: 60k training and 10k test images, 28x28."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from .bundle import DataBundle
from .idx import build_idx_dataset

MEAN, STD = 0.1307, 0.3081  # of the 60k training images, in [0, 1]


def build_mnist(cfg: DictConfig, seed: int, device: torch.device | None = None) -> DataBundle:
    return build_idx_dataset(cfg, seed, device or torch.device("cpu"), mean=MEAN, std=STD)
