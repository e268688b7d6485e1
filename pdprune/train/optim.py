"""Optimizer and per-epoch LR schedule from the `optim` group."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn


def param_groups(model: nn.Module) -> list:
    """The trainable parameters, for an optimizer: a plain list, unless some carry
    `optim_overrides` (a method's own parameters: movement's scores take their own lr and no
    weight decay); then the others form the first group and each set of overrides its own."""
    plain, special = [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        overrides = getattr(p, "optim_overrides", None)
        if overrides is None:
            plain.append(p)
        else:
            special.setdefault(tuple(sorted(overrides.items())), []).append(p)
    if not special:
        return plain
    return [{"params": plain}, *({"params": ps, **dict(key)} for key, ps in special.items())]


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = param_groups(model)
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
