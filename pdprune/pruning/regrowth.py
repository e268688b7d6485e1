"""Drop and regrow: the training rule of SET, RigL and GraNet (docs/methods.md#set-and-rigl,
#granet).

At an update step t, in every layer: the fraction f(t) = alpha / 2 * (1 + cos(pi t / T_end)) of
the active weights with the smallest magnitudes is dropped, and as many inactive weights are
activated, chosen by a growth criterion: uniformly at random (SET) or the largest magnitude of
the dense gradient dL/d(w * mask) of step t's batch (RigL, GraNet). The per-layer counts, so
the sparsity, never change. As in RigL's Algorithm 1 (and the RigL and GraNet code), growth
chooses among all weights inactive after the drop, the just-dropped ones included: one dropped
and grown again is simply kept, its value and optimizer state untouched. A weight that was
inactive before the update starts at zero, its optimizer state (momentum, Adam moments) zeroed.

The update runs after the backward of step t, before the optimizer step. A loop that never
calls after_backward (the public API's step()-only loop) gets it at the next before_step, on
the same gradient, after the optimizer step (SET's original order). Ties break by position,
the lower index first: the same masks on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..distributed import mean_across_ranks
from ..errors import PdpruneError
from .masks import BinaryMask
from .rules import TrainingRule


class GradientMask(BinaryMask):
    """A binary mask that, while `capturing`, records its layer's dense gradient
    dL/d(w * mask): nonzero also where the mask is 0, unlike the weight's own .grad. Armed
    only at update steps, so other steps pay one flag test."""

    def __init__(self, weight: torch.Tensor, granularity):
        super().__init__(weight, granularity)
        self.capturing = False
        self.dense_grad: torch.Tensor | None = None  # summed over the forwards of one step

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = weight * self.mask
        if self.capturing and out.requires_grad:
            out.register_hook(self._record)
        return out

    def _record(self, grad: torch.Tensor) -> None:
        grad = grad.detach()
        self.dense_grad = grad.clone() if self.dense_grad is None else self.dense_grad + grad


@dataclass(frozen=True)
class UpdateTimes:
    """Masks change every `every` steps from `start` while t < `end` (T_end), dropping the
    fraction alpha / 2 * (1 + cos(pi t / end)) of each layer's active weights."""

    every: int
    end: int
    alpha: float
    start: int = 0

    def due(self, step: int) -> bool:
        return self.start <= step < self.end and (step - self.start) % self.every == 0

    def fraction(self, step: int) -> float:
        return self.alpha / 2 * (1 + math.cos(math.pi * step / self.end))


class GrowByGradient:
    """RigL, GraNet: the largest |dL/d(w * mask)| (averaged over data-parallel ranks)."""

    needs_gradient = True

    def scores(self, mask: GradientMask) -> torch.Tensor:
        if mask.dense_grad is None:
            raise PdpruneError("a gradient-grown layer got no gradient at its update step (is "
                               "its weight used in the forward?)")
        return mean_across_ranks(mask.dense_grad.float()).abs()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GrowAtRandom:
    """SET: iid uniform scores from one seeded generator (the top k of them is a uniformly
    random k-subset); its state is in the checkpoint. Every rank draws the same."""

    needs_gradient = False

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, mask: GradientMask) -> torch.Tensor:
        return torch.rand(mask.mask.shape, generator=self.generator).to(mask.mask.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def drop_and_grow(active: torch.Tensor, magnitudes: torch.Tensor, scores: torch.Tensor,
                  count: int) -> torch.Tensor:
    """The new active set (flat bool): the `count` active weights of smallest magnitude
    dropped, then the `count` weights inactive after that with the largest scores grown.
    Stable sorts: ties go to the lower index."""
    drop_key = torch.where(active, magnitudes, torch.inf)
    kept = active.clone()
    kept[torch.sort(drop_key, stable=True).indices[:count]] = False
    grow_key = torch.where(kept, -torch.inf, scores.float())
    grown = kept.clone()
    grown[torch.sort(grow_key, descending=True, stable=True).indices[:count]] = True
    return grown


def reset_state(optimizer: torch.optim.Optimizer, param: torch.Tensor,
                where: torch.Tensor) -> None:
    """Zero every per-element state of `param` (momentum buffer, Adam moments) at `where`."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value[where] = 0


class DropAndGrow(TrainingRule):
    """The rule on a WeightStructure of GradientMasks. `round_count` turns f(t) * active into
    the count dropped per layer: floor for SET / RigL (the RigL code), ceil for GraNet (its
    code)."""

    def __init__(self, structure, times: UpdateTimes, grow,
                 round_count: Callable[[float], int] = math.floor):
        self.structure, self.times, self.grow = structure, times, grow
        self.round_count = round_count
        self.pending: int | None = None  # the step whose update is due and not yet made
        self.updates, self.grown = 0, 0  # updates made; weights activated by them, in all

    def before_step(self, pruner, step: int) -> None:
        if self.pending is not None and self.pending < step:  # no after_backward came
            self.update(pruner.optimizer, self.pending)
        if self.times.due(step):
            self._arm(step)

    def after_backward(self, pruner, step: int) -> None:
        if self.pending == step:
            self.update(pruner.optimizer, step)

    def _arm(self, step: int | None) -> None:
        self.pending = step
        for layer in self.structure.layers:
            layer.mask.capturing = step is not None and self.grow.needs_gradient
            layer.mask.dense_grad = None

    @torch.no_grad()
    def update(self, optimizer: torch.optim.Optimizer | None, step: int) -> None:
        if optimizer is None:
            raise PdpruneError("drop-and-grow methods reset the optimizer state of regrown "
                               "weights: bind the optimizer first (pruning.bind(optimizer))")
        fraction = self.times.fraction(step)
        for layer in self.structure.layers:
            mask, weight = layer.mask, layer.original
            active = mask.mask.reshape(-1)
            count = self.round_count(fraction * int(active.sum()))
            if count == 0:
                continue
            new = drop_and_grow(active, weight.detach().abs().reshape(-1),
                                self.grow.scores(mask).reshape(-1), count)
            fresh = (new & ~active).reshape(weight.shape)
            weight[fresh] = 0
            self.grown += int(fresh.sum())
            reset_state(optimizer, weight, fresh)
            mask.mask.copy_(new.reshape(mask.mask.shape))
        self.updates += 1
        self._arm(None)

    def before_finalize(self, pruner) -> None:
        self._arm(None)  # no hook outlives training

    def summary(self) -> dict:
        return {"regrowth": {"updates": self.updates, "grown": self.grown,
                             "every": self.times.every, "end_step": self.times.end}}

    def state_dict(self) -> dict:
        return {"pending": self.pending, "grow": self.grow.state_dict(),
                "updates": self.updates, "grown": self.grown}

    def load_state_dict(self, state: dict) -> None:
        self.grow.load_state_dict(state["grow"])
        self.updates, self.grown = state["updates"], state["grown"]
        self._arm(state["pending"])
