"""Optimizer and per-epoch LR schedule from the `optim` group."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                 weight_decay=cfg.weight_decay)
    raise ValueError(f"optim={cfg.name} is not implemented")


def build_lr_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer,
                       epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
