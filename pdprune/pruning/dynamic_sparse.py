"""Config -> driver for the drop-and-regrow methods (docs/methods.md#set-and-rigl, #granet).

    method  initial mask               budget              schedule            regrowth
    set     random, at the target      ERK / uniform       from_start (step 0) random
    rigl    random, at the target      ERK / uniform       from_start (step 0) |dense grad|
    granet  dense, magnitude pruned    global / uniform    cubic (GMP's)       |dense grad|

The masks are GradientMasks (binary masks that can record the dense gradient); the drop and
regrow is a training rule (regrowth.py) that keeps every layer's count, so the budget's.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig
from torch import nn

from ..errors import ConfigError
from .budgets import ERK, Global, Uniform
from .core import Pruner
from .erk import DISTRIBUTIONS, kept_counts
from .regrowth import DropAndGrow, GradientMask, GrowAtRandom, GrowByGradient, UpdateTimes
from .scorers import MagnitudeScorer, RandomScorer
from .structures.granularity import build_granularity
from .structures.weights import WeightStructure

METHODS = ("set", "rigl", "granet")


def dynamic_sparse_pruner(cfg: DictConfig, targets: list[tuple[str, nn.Module]], schedule,
                          steps_per_epoch: int) -> Pruner:
    method = cfg.method
    structure = WeightStructure(targets, build_granularity(cfg.granularity), None,
                                make_mask=GradientMask)
    end = round(method.t_end * cfg.trainer.epochs * steps_per_epoch)  # T_end in steps
    if method.name == "granet":  # GMP, plus regeneration at each of its mask updates
        structure.check(schedule.target, method.budget)
        budget = Global(structure) if method.budget == "global" else Uniform(structure)
        times = UpdateTimes(schedule.dt, end, method.alpha, schedule.start_step)
        rule = DropAndGrow(structure, times, GrowByGradient(), math.ceil)
        scorer = MagnitudeScorer(structure)
    else:  # sparse from the start: a random mask at the ERK (or uniform) densities
        shapes = [tuple(layer.original.shape) for layer in structure.layers]
        budget = ERK(structure, shapes, method.distribution)
        budget.counts(schedule.target, schedule.target, None)  # refuse an empty layer now
        grow = GrowAtRandom(method.seed) if method.name == "set" else GrowByGradient()
        rule = DropAndGrow(structure, UpdateTimes(method.delta_t, end, method.alpha), grow,
                           math.floor)
        scorer = RandomScorer(structure, method.seed)
    return Pruner(structure, scorer, budget, schedule, steps_per_epoch, rules=[rule]).attach()


def check_config(cfg: DictConfig) -> None:
    """method=set / rigl / granet's keys, as one-line errors naming the key."""
    method = cfg.method
    if cfg.granularity.name != "unstructured":
        raise ConfigError("granularity", cfg.granularity.name, f"method={method.name} drops "
                          "and regrows single weights: needs granularity=unstructured")
    if not 0 <= method.alpha <= 1:
        raise ConfigError("method.alpha", method.alpha, "must be in [0, 1]: a fraction of "
                          "each layer's active weights")
    if not 0 < method.t_end <= 1:
        raise ConfigError("method.t_end", method.t_end, "must be in (0, 1]: a fraction of "
                          "the training steps")
    if method.name == "granet":
        if cfg.schedule.name != "cubic":
            raise ConfigError("schedule", cfg.schedule.name, "method=granet regenerates at "
                              "the mask updates of GMP's schedule: needs schedule=cubic")
        return
    if method.distribution not in DISTRIBUTIONS:
        raise ConfigError("method.distribution", method.distribution,
                          f"must be one of {', '.join(DISTRIBUTIONS)}")
    if method.delta_t < 1:
        raise ConfigError("method.delta_t", method.delta_t, "must be at least 1 optimizer step")


def check_erk(cfg: DictConfig, targets: list[tuple[str, nn.Module]]) -> None:
    """SET / RigL before a run (shapes only: a model on the meta device will do): every layer
    keeps a weight at the target."""
    kept_counts([tuple(m.weight.shape) for _, m in targets], cfg.schedule.target,
                cfg.method.distribution, [name for name, _ in targets])
