"""Budgets: how many units each mask group prunes at a target sparsity (docs/methods.md#budgets).

- Uniform: every group at the target, round(s * n) of its n units.
- Global: one cut over the scores of all groups (the structure makes scores comparable and
  settles the counts: a weight cut must leave each layer a weight, channel counts are rounded
  to blocks of channels).
- ERK: per-layer densities by Erdos-Renyi-Kernel (or uniform), exactly round((1 - s) N)
  kept in total (erk.py): SET, RigL.
- Pattern: N:M, where the pattern fixes the count per row; the schedule's progress ramps it.
- FixedOnce: the inner budget, computed once at the FINAL target when pruning starts (PDP's
  end of warm-up), then scaled: pruned = round(s / s_final * P).
- Planned: counts fixed by a trigger (EPI's sub-network), scaled like FixedOnce.

`counts(sparsity, final, scores)` takes `scores(i)`, called only by a budget that needs them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..measure.latency import compare_latency
from ..models.blocks import remove_blocks
from .erk import kept_counts
from .selection import global_budget, uniform_budget

Scores = Callable[[int], torch.Tensor]


class Stateless:
    """A budget that is a function of its inputs: nothing to save."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Nothing(Stateless):
    """No units to count (dense; block removal, whose budget chooses blocks)."""

    def __init__(self, structure):
        self.structure = structure

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        return [0] * len(self.structure.sizes())


class Uniform(Stateless):
    def __init__(self, structure):
        self.structure = structure

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        return self.structure.settle(uniform_budget(self.structure.sizes(), sparsity), final)


class Global(Stateless):
    def __init__(self, structure):
        self.structure = structure

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        comparable = [self.structure.comparable(scores(i))
                      for i in range(len(self.structure.sizes()))]
        return self.structure.settle(global_budget(comparable, sparsity), final)


class ERK(Stateless):
    """Sparse-from-the-start densities (erk.py): Erdos-Renyi-Kernel or uniform, the total kept
    exactly round((1 - s) N). Needs each group's weight shape, so weights only."""

    def __init__(self, structure, shapes: list[tuple[int, ...]], distribution: str = "erk"):
        self.structure, self.shapes, self.distribution = structure, shapes, distribution

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        kept = kept_counts(self.shapes, sparsity, self.distribution, self.structure.names)
        return [n - k for n, k in zip(self.structure.sizes(), kept, strict=True)]


class Pattern(Stateless):
    """N:M: m - n units of every group of m at the target; the schedule ramps the count."""

    def __init__(self, structure):
        self.structure = structure

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        progress = sparsity / final if sparsity else 0.0
        return [round(progress * self.structure.fixed_per_row)] * len(self.structure.sizes())


class FixedOnce:
    """The inner budget at the final target, taken once (from the weights of that moment)."""

    def __init__(self, inner):
        self.inner = inner
        self.fixed: list[int] | None = None

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        if sparsity == 0 or final == 0:
            return [0] * len(self.inner.structure.sizes())
        if self.fixed is None:
            self.fixed = self.inner.counts(final, final, scores)
        return [round(sparsity / final * b) for b in self.fixed]

    def state_dict(self) -> dict:
        return {"fixed": self.fixed}

    def load_state_dict(self, state: dict) -> None:
        self.fixed = state["fixed"]


class Planned(Stateless):
    """Counts planned by a trigger (`trigger.planned`, pruned units per group at the final
    target, None until it fires); until then `before`'s."""

    def __init__(self, trigger, before):
        self.trigger, self.before = trigger, before

    def counts(self, sparsity: float, final: float, scores: Scores) -> list[int]:
        planned = self.trigger.planned
        if planned is None or sparsity == 0 or final == 0:
            return self.before.counts(sparsity, final, scores)
        return [round(sparsity / final * p) for p in planned]


class BlockCount(Stateless):
    """LayerPrune: the `count` least important blocks."""

    def __init__(self, count: int):
        self.count = count

    def __call__(self, model, order: list[str]) -> list[str]:
        return order[:self.count]

    def summary(self) -> dict:
        return {}


class WithinLatency:
    """LayerPrune with a latency budget: remove blocks in order of importance until the measured
    latency on the training device is at most `budget` x the unpruned model's (one block stays)."""

    count = None  # decided by measuring

    def __init__(self, budget: float, batch: int, input_shape: tuple[int, ...]):
        self.budget, self.batch, self.input_shape = budget, batch, input_shape
        self.trace: list[dict] = []

    def __call__(self, model, order: list[str]) -> list[str]:
        device = next(model.parameters()).device
        dense, candidate = copy.deepcopy(model), copy.deepcopy(model)
        chosen: list[str] = []
        for name in order[:-1]:  # at least one block stays
            remove_blocks(candidate, [name])
            chosen.append(name)
            timing = compare_latency({"dense": dense, "pruned": candidate}, self.input_shape,
                                     self.batch, device)
            ratio = timing["pruned"]["median_ms"] / timing["dense"]["median_ms"]
            self.trace.append({"removed": len(chosen), "block": name, "ratio": ratio,
                               "median_ms": timing["pruned"]["median_ms"]})
            if ratio <= self.budget:
                return chosen
        return chosen

    def summary(self) -> dict:
        return {"latency_budget": self.budget, "latency_trace": self.trace}

    def state_dict(self) -> dict:
        return {"trace": list(self.trace)}

    def load_state_dict(self, state: dict) -> None:
        self.trace = list(state["trace"])
