"""Pruning as four small ideas: granularity (what a mask unit covers), selection (thresholds,
top-k, budgets), schedule (step -> target sparsity) and method (targets -> masks); the Pruner
drives them from the train loop."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from .granularity import build_granularity
from .methods import build_method
from .pruner import NoPruning, Pruner
from .schedules import build_schedule
from .targets import select_targets


def build_pruner(cfg: DictConfig, model: nn.Module, steps_per_epoch: int) -> Pruner | NoPruning:
    """The pruner for cfg.method / cfg.granularity / cfg.schedule, attached to `model`."""
    targets = select_targets(model, cfg.method.targets)
    if cfg.method.name == "dense":
        return NoPruning(model, targets)
    method = build_method(cfg.method, build_granularity(cfg.granularity))
    schedule = build_schedule(cfg.schedule, steps_per_epoch)
    return Pruner(model, targets, method, schedule).attach()


__all__ = ["NoPruning", "Pruner", "build_pruner"]
