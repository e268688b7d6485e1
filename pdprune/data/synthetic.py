"""A generated task for tests: each class is a random template image plus Gaussian noise."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from .bundle import DataBundle, TensorLoader


def build_synthetic(cfg: DictConfig, seed: int,
                    device: torch.device | None = None) -> DataBundle:
    gen = torch.Generator().manual_seed(cfg.split_seed)
    shape = (cfg.channels, cfg.size, cfg.size)
    templates = torch.randn((cfg.num_classes, *shape), generator=gen)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(cfg.num_classes, (n,), generator=gen)
        return templates[y] + cfg.noise * torch.randn((n, *shape), generator=gen), y

    (xt, yt), (xv, yv), (xs, ys) = (sample(cfg.num_train), sample(cfg.num_val),
                                    sample(cfg.num_test))
    return DataBundle(
        name="synthetic",
        train=TensorLoader(xt, yt, cfg.batch_size, shuffle=True, drop_last=True, seed=seed,
                           device=device),
        val=TensorLoader(xv, yv, cfg.eval_batch_size, device=device),
        test=TensorLoader(xs, ys, cfg.eval_batch_size, device=device),
        input_shape=shape,
        num_classes=cfg.num_classes,
    )
