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

    @property
    def sparsity(self) -> float:
        return self.pruned / self.params


class Pruner:
    def __init__(self, model: nn.Module, targets: list[tuple[str, nn.Module]], method: Method,
                 schedule: Schedule):
        self.model, self.method, self.schedule = model, method, schedule
        self.layers = [Layer(name, module) for name, module in targets]
        self.sparsity = 0.0  # the target the masks currently implement
        self.counts = [0] * len(self.layers)  # units pruned per row, per layer

    @property
    def final_sparsity(self) -> float:
        return self.schedule.target

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
        self.counts = self.method.counts(self.layers, sparsity, self.final_sparsity)
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
        if self.sparsity != self.final_sparsity:
            self.set_sparsity(self.final_sparsity)
        results = []
        for layer, count in zip(self.layers, self.counts, strict=True):
            hard = self.method.hard_mask(layer).clone()
            ties = self.method.ties(layer)
            weight = layer.original
            expected = count * weight.numel() // self.method.granularity.units_per_row(weight)
            parametrize.remove_parametrizations(layer.module, "weight", leave_parametrized=False)
            layer.module.weight.mul_(hard)
            layer.mask = None
            pruned = int((~hard).sum())
            results.append(LayerResult(layer.name, tuple(weight.shape), weight.numel(), expected,
                                       pruned, ties))
            if abs(pruned - expected) > ties:
                raise PdpruneError(f"{layer.name}: hardened mask prunes {pruned} weights, the "
                                   f"budget asked for {expected} ({ties} ties)")
        return results

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


class NoPruning:
    """The dense baseline: same interface, no masks. Reports the layers it would have pruned."""

    final_sparsity = 0.0
    sparsity = 0.0

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
