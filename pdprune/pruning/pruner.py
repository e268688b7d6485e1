"""The pruner: attaches masks, follows the schedule, hardens at the end.

The train loop calls it at named points (before each optimizer step, at the end); it never owns
the loop. Its state (current target, per-layer counts, PDP budgets) plus the mask buffers in the
model's state_dict restore a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import PdpruneError
from .budgets import check_weight_budget
from .methods import Layer, Method
from .schedules import Schedule


@dataclass
class LayerResult:
    """One layer after hardening."""

    name: str
    shape: tuple[int, ...]
    params: int
    expected_pruned: int  # what the budget asked for (in weights)
    pruned: int  # what the hardened mask zeroed
    ties: int  # weights on the threshold, which may be kept or not
    groups: int | None = None  # N:M: groups in the layer
    groups_exact: int | None = None  # N:M: groups holding exactly N non-zeros after baking

    @property
    def sparsity(self) -> float:
        return self.pruned / self.params


class LoopHooks:
    """The train loop's per-epoch and per-backward calls; most pruners need none of them."""

    def begin_epoch(self, epoch: int) -> list[nn.Parameter]:
        """Before the first batch of `epoch` (0-based); the training loader is idle. Returns
        parameters whose shape it changed (layer pruning re-shaping a conv)."""
        return []

    def after_backward(self) -> None:
        """After each backward, before gradient clipping and the optimizer step."""

    def end_epoch(self, epochs_done: int) -> dict:
        """After an epoch's last step; returns extra fields for its metrics record."""
        return {}


class Pruner(LoopHooks):
    def __init__(self, model: nn.Module, targets: list[tuple[str, nn.Module]], method: Method,
                 schedule: Schedule):
        self.model, self.method, self.schedule = model, method, schedule
        self.granularity = method.granularity
        supported = [(n, m) for n, m in targets if self.granularity.supports(m.weight)]
        self.left_dense = [n for n, m in targets if not self.granularity.supports(m.weight)]
        self.layers = [Layer(name, module) for name, module in supported]
        self.sparsity = 0.0  # the schedule's value the masks currently implement
        self.counts = [0] * len(self.layers)  # units pruned per row, per layer
        if self.granularity.pruned_per_row is None:  # N:M keeps n >= 1 per group by design
            check_weight_budget([(layer.name, self.granularity.units_per_row(layer.original))
                                 for layer in self.layers], schedule.target, method.budget)

    @property
    def final_sparsity(self) -> float:
        """The fraction of prunable weights zero at the end."""
        fixed = self.granularity.pruned_per_row
        return self.schedule.target if fixed is None else fixed / self.granularity.m

    @property
    def target_sparsity(self) -> float:
        """The fraction of prunable weights the current budget prunes."""
        pruned = sum(self._weights_pruned(layer, count)
                     for layer, count in zip(self.layers, self.counts, strict=True))
        return pruned / max(1, self.num_prunable)

    def _weights_pruned(self, layer: Layer, count: int) -> int:
        weight = layer.original
        return count * weight.numel() // self.granularity.units_per_row(weight)

    def attach(self) -> Pruner:
        for layer in self.layers:
            layer.mask = self.method.make_mask(layer.module.weight)
            parametrize.register_parametrization(layer.module, "weight", layer.mask)
        return self

    def before_step(self, step: int) -> None:
        """Called before optimizer step `step` (0-based count of steps already taken)."""
        target = self.schedule.sparsity_at(step)
        if target != self.sparsity:
            self.set_sparsity(target)

    def set_sparsity(self, sparsity: float) -> None:
        fixed = self.granularity.pruned_per_row
        if fixed is None:
            self.counts = self.method.counts(self.layers, sparsity, self.schedule.target)
        else:  # N:M: the schedule's progress ramps the per-group count up to m - n
            progress = sparsity / self.schedule.target if sparsity else 0.0
            self.counts = [round(progress * fixed)] * len(self.layers)
        for layer, count in zip(self.layers, self.counts, strict=True):
            self.method.apply(layer, count)
        self.sparsity = sparsity

    @torch.no_grad()
    def achieved_sparsity(self) -> float:
        """Fraction of prunable weights that the (hardened) masks zero right now."""
        zeros = sum(int((~self.method.hard_mask(layer)).sum()) for layer in self.layers)
        return zeros / max(1, self.num_prunable)

    @property
    def num_prunable(self) -> int:
        return sum(layer.original.numel() for layer in self.layers)

    @torch.no_grad()
    def finalize(self) -> list[LayerResult]:
        """Harden masks at the final target, bake the zeros into the weights, remove the
        parametrizations, and check the result against the budget (to the element, up to ties)."""
        if self.sparsity != self.schedule.target:
            self.set_sparsity(self.schedule.target)
        results = []
        for layer, count in zip(self.layers, self.counts, strict=True):
            hard = self.method.hard_mask(layer).clone()
            ties = self.method.ties(layer)
            weight = layer.original
            expected = self._weights_pruned(layer, count)
            parametrize.remove_parametrizations(layer.module, "weight", leave_parametrized=False)
            layer.module.weight.mul_(hard)
            layer.mask = None
            pruned = int((~hard).sum())
            results.append(LayerResult(layer.name, tuple(weight.shape), weight.numel(), expected,
                                       pruned, ties, *self._group_check(layer.module.weight,
                                                                        count)))
            if abs(pruned - expected) > ties:
                raise PdpruneError(f"{layer.name}: hardened mask prunes {pruned} weights, the "
                                   f"budget asked for {expected} ({ties} ties)")
            # nan * 0 is nan: a pruned weight that did not bake to zero is not pruned
            unbaked = int((layer.module.weight[~hard] != 0).sum())
            if unbaked:
                raise PdpruneError(f"{layer.name}: {unbaked} pruned weights are not zero after "
                                   "baking (the weights are not finite: lower optim.lr or set "
                                   "trainer.grad_clip_norm)")
        return results

    def _group_check(self, weight: torch.Tensor, count: int) -> tuple[int | None, int | None]:
        """N:M: (groups, groups with exactly n non-zeros) of a baked weight."""
        if self.granularity.pruned_per_row is None:
            return None, None
        nonzero = (self.granularity.magnitudes(weight) != 0).sum(dim=-1)
        kept = self.granularity.units_per_row(weight) - count
        return len(nonzero), int((nonzero == kept).sum())

    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity, "counts": list(self.counts),
                "method": self.method.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.sparsity = state["sparsity"]
        self.counts = list(state["counts"])
        for layer, count in zip(self.layers, self.counts, strict=True):
            if hasattr(layer.mask, "pruned"):
                layer.mask.pruned = count  # binary masks come back with the model's buffers


class NoPruning(LoopHooks):
    """The dense baseline: same interface, no masks. Reports the layers it would have pruned."""

    final_sparsity = 0.0
    target_sparsity = 0.0
    sparsity = 0.0
    left_dense: list[str] = []

    def __init__(self, model: nn.Module, targets: list[tuple[str, nn.Module]]):
        self.model = model
        self.layers = [Layer(name, module) for name, module in targets]

    def attach(self) -> NoPruning:
        return self

    def before_step(self, step: int) -> None:
        pass

    @property
    def num_prunable(self) -> int:
        return sum(layer.original.numel() for layer in self.layers)

    @torch.no_grad()
    def achieved_sparsity(self) -> float:
        zeros = sum(int((layer.original == 0).sum()) for layer in self.layers)
        return zeros / max(1, self.num_prunable)

    @torch.no_grad()
    def finalize(self) -> list[LayerResult]:
        return [LayerResult(layer.name, tuple(layer.original.shape), layer.original.numel(), 0,
                            int((layer.original == 0).sum()), 0) for layer in self.layers]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
