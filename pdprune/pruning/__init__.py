"""Pruning as four small ideas: granularity (what a mask unit covers), selection (thresholds,
top-k, budgets), schedule (step -> target sparsity) and method (targets -> masks); the Pruner
drives them from the train loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from omegaconf import DictConfig
from torch import nn

from .blocks import find_blocks
from .budgets import check_blocks, check_channel_budget, check_weight_budget
from .channel_groups import PRODUCERS, ChannelGroup, find_channel_groups
from .channel_pruner import ChannelPruner
from .granularity import build_granularity
from .layer_pruner import LayerPruner
from .methods import build_method
from .pruner import NoPruning, Pruner
from .schedules import build_schedule
from .targets import is_depthwise, select_targets


def build_pruner(cfg: DictConfig, model: nn.Module, steps_per_epoch: int,
                 input_shape: tuple[int, ...] | None = None,
                 train_batches: Callable[[], Iterable] | None = None) -> AnyPruner:
    """The pruner for cfg.method / cfg.granularity / cfg.schedule, attached to `model`.
    granularity=channel traces the model on a zero batch of `input_shape` (one sample's shape);
    method=layerprune reads `train_batches()` (one pass of training data) for gradient criteria
    and measures latency on inputs of `input_shape`."""
    targets = select_targets(model, cfg.method.targets)
    if cfg.method.name == "dense":
        return NoPruning(model, targets)
    schedule = build_schedule(cfg.schedule, steps_per_epoch)
    if cfg.method.name == "layerprune":
        m = cfg.method
        return LayerPruner(model, schedule, m.criterion,
                           layers_to_remove=None if m.latency_budget else m.layers_to_remove,
                           latency_budget=m.latency_budget, latency_batch=m.latency_batch,
                           input_shape=input_shape, train_batches=train_batches,
                           importance_batches=m.importance_batches)
    if cfg.granularity.name == "channel":
        return build_channel_pruner(cfg.method, model, targets, schedule, input_shape,
                                    cfg.granularity.round_to).attach()
    method = build_method(cfg.method, build_granularity(cfg.granularity))
    return Pruner(model, targets, method, schedule).attach()


def build_channel_pruner(cfg: DictConfig, model: nn.Module, targets: list[tuple[str, nn.Module]],
                         schedule, input_shape: tuple[int, ...],
                         round_to: int = 1) -> ChannelPruner:
    """A channel pruner over the coupled groups rooted at `targets` (see channel_groups)."""
    groups, left_dense = channel_groups(model, targets, input_shape)
    return ChannelPruner(model, groups, cfg.name, cfg.get("budget", "uniform"), schedule,
                         left_dense, tau=cfg.get("tau", 1e-4), seed=cfg.get("seed", 0),
                         round_to=round_to)


def channel_groups(model: nn.Module, targets: list[tuple[str, nn.Module]],
                   input_shape: tuple[int, ...]) -> tuple[list[ChannelGroup], list[str]]:
    """Targets become roots of coupled channel groups; a group touching the output channels of
    any other conv / linear (the classifier, excluded layers) stays dense. Depthwise convs are
    never roots but join their producer's group. Returns (groups, roots left dense)."""
    roots = [name for name, _ in targets]
    ignored = [name for name, m in model.named_modules() if isinstance(m, PRODUCERS)
               and name not in roots and not is_depthwise(m)]
    example = torch.zeros((1, *input_shape), device=next(model.parameters()).device)
    groups = find_channel_groups(model, example, roots, ignored)
    covered = {p.name for g in groups for p in g.producers}
    return groups, [name for name in roots if name not in covered]


def check_targets(cfg: DictConfig, model: nn.Module,
                  input_shape: tuple[int, ...] | None = None) -> None:
    """The budget checks that build_pruner makes, without attaching anything: for a preflight,
    on a model built on the meta device. Raises ConfigError naming `sparsity` (or
    method.layers_to_remove) with the largest value that can be met."""
    name = cfg.method.name
    if name == "dense":
        return
    if name == "layerprune":
        check_blocks(len(find_blocks(model)), None if cfg.method.latency_budget
                     else cfg.method.layers_to_remove, type(model).__name__)
        return
    targets = select_targets(model, cfg.method.targets)
    target = cfg.schedule.target
    if cfg.granularity.name == "channel":
        groups, _ = channel_groups(model, targets, input_shape)
        kind = "global" if cfg.schedule.name == "epi" else cfg.method.get("budget", "uniform")
        check_channel_budget([g.channels for g in groups], target, kind, cfg.granularity.round_to)
        return
    granularity = build_granularity(cfg.granularity)
    if granularity.pruned_per_row is None:
        check_weight_budget([(n, granularity.units_per_row(m.weight)) for n, m in targets
                             if granularity.supports(m.weight)], target, cfg.method.budget)


AnyPruner = Pruner | ChannelPruner | LayerPruner | NoPruning

__all__ = ["AnyPruner", "ChannelPruner", "LayerPruner", "NoPruning", "Pruner", "build_pruner",
           "check_targets"]
