"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, no download."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from sklearn.datasets import load_digits

from .bundle import DataBundle, TensorLoader, normalizer, seeded_split


def build_digits(cfg: DictConfig, seed: int,
                 device: torch.device | None = None) -> DataBundle:
    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(raw.target, dtype=torch.long)
    n = len(x)
    n_val, n_test = round(cfg.val_fraction * n), round(cfg.test_fraction * n)
    train_idx, val_idx, test_idx = seeded_split(n, (n_val, n_test), cfg.split_seed)
    mean, std = x[train_idx].mean().item(), x[train_idx].std().item()
    norm = normalizer(mean, std)
    return DataBundle(
        name="digits",
        train=TensorLoader(x[train_idx], y[train_idx], cfg.batch_size, shuffle=True,
                           drop_last=True, seed=seed, transform=norm, device=device),
        val=TensorLoader(x[val_idx], y[val_idx], cfg.eval_batch_size, transform=norm,
                         device=device),
        test=TensorLoader(x[test_idx], y[test_idx], cfg.eval_batch_size, transform=norm,
                         device=device),
        input_shape=(1, 8, 8),
        num_classes=10,
    )
