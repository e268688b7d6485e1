"""Methods: how per-layer targets become masks. Hard binary (magnitude, random) or soft (PDP)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from .budgets import check_cut
from .granularity import Granularity
from .masks import BinaryMask, PDPSoftMask
from .selection import global_budget, keep_largest, uniform_budget


@dataclass
class Layer:
    """One prunable layer: its name, module and the mask parametrization on its weight."""

    name: str
    module: nn.Module
    mask: nn.Module | None = None

    @property
    def original(self) -> torch.Tensor:
        """The trained weight before masking (what the optimizer updates)."""
        if self.mask is None:
            return self.module.weight
        return self.module.parametrizations.weight.original


def _sizes(granularity: Granularity, layers: list[Layer]) -> list[tuple[str, int]]:
    return [(layer.name, granularity.units_per_row(layer.original)) for layer in layers]


class MagnitudeMethod:
    """Keep the largest |w|: binary masks recomputed whenever the target changes.

    Scores are the *masked* weights, so a pruned weight (score 0) never comes back while
    sparsity rises, whatever momentum or weight decay do to the stored value.
    """

    def __init__(self, granularity: Granularity, budget: str):
        self.granularity, self.budget = granularity, budget

    def make_mask(self, weight: torch.Tensor) -> nn.Module:
        return BinaryMask(weight)

    @torch.no_grad()
    def scores(self, layer: Layer) -> torch.Tensor:
        return self.granularity.magnitudes(layer.original * layer.mask.mask)

    def counts(self, layers: list[Layer], sparsity: float, final: float) -> list[int]:
        if self.budget == "global":
            counts = global_budget([self.scores(layer) for layer in layers], sparsity)
            check_cut(_sizes(self.granularity, layers), counts, final)
            return counts
        return uniform_budget([self.granularity.units_per_row(layer.original)
                               for layer in layers], sparsity)

    @torch.no_grad()
    def apply(self, layer: Layer, pruned: int) -> None:
        keep = keep_largest(self.scores(layer), pruned)
        layer.mask.mask.copy_(self.granularity.expand(keep, layer.original))

    def hard_mask(self, layer: Layer) -> torch.Tensor:
        return layer.mask.mask

    def ties(self, layer: Layer) -> int:
        return 0  # top-k breaks ties: exactly the budget is kept

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RandomMethod(MagnitudeMethod):
    """Binary masks from fixed random scores: nested as sparsity rises. The control."""

    def __init__(self, granularity: Granularity, budget: str, seed: int):
        super().__init__(granularity, budget)
        self.seed = seed
        self._scores: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def scores(self, layer: Layer) -> torch.Tensor:
        if layer.name not in self._scores:
            shape = self.granularity.magnitudes(layer.original).shape
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + len(self._scores))
            self._scores[layer.name] = torch.rand(shape, generator=gen).to(layer.original.device)
        return self._scores[layer.name]


class PDPMethod:
    """PDP: soft masks m = sigmoid((w^2 - t^2)/tau) recomputed in every forward.

    Per-layer budgets are set ONCE, when the schedule first asks for sparsity (the end of
    warm-up): `global` cuts all prunable magnitudes at the FINAL target; layer l's share is the
    count below the cut. Later targets scale the budgets: pruned_l = round(s / s_final * P_l).
    """

    def __init__(self, granularity: Granularity, budget: str, tau: float):
        self.granularity, self.budget, self.tau = granularity, budget, tau
        self.budgets: list[int] | None = None

    def make_mask(self, weight: torch.Tensor) -> nn.Module:
        return PDPSoftMask(self.granularity, self.tau)

    def counts(self, layers: list[Layer], sparsity: float, final: float) -> list[int]:
        if sparsity == 0 or final == 0:
            return [0] * len(layers)
        if self.budgets is None:
            if self.budget == "global":
                self.budgets = global_budget(
                    [self.granularity.magnitudes(layer.original) for layer in layers], final)
                check_cut(_sizes(self.granularity, layers), self.budgets, final)
            else:
                self.budgets = uniform_budget(
                    [self.granularity.units_per_row(layer.original) for layer in layers], final)
        return [round(sparsity / final * b) for b in self.budgets]

    def apply(self, layer: Layer, pruned: int) -> None:
        layer.mask.pruned = pruned

    @torch.no_grad()
    def hard_mask(self, layer: Layer) -> torch.Tensor:
        weight, pruned = layer.original, layer.mask.pruned
        if self.granularity.pruned_per_row is not None and pruned:
            # a fixed pattern (N:M) must hold exactly: the largest per group, which is m >= 0.5
            # except that a tie on the threshold is broken instead of keeping both
            keep = keep_largest(self.granularity.magnitudes(weight), pruned)
        else:
            keep = layer.mask.hard_mask(weight)
        return self.granularity.expand(keep, weight)

    def ties(self, layer: Layer) -> int:
        if self.granularity.pruned_per_row is not None:
            return 0
        return layer.mask.ties(layer.original)

    def state_dict(self) -> dict:
        return {"budgets": self.budgets}

    def load_state_dict(self, state: dict) -> None:
        self.budgets = state["budgets"]


Method = MagnitudeMethod | PDPMethod


def build_method(cfg: DictConfig, granularity: Granularity) -> Method:
    if cfg.name == "magnitude":
        return MagnitudeMethod(granularity, cfg.budget)
    if cfg.name == "random":
        return RandomMethod(granularity, cfg.budget, cfg.seed)
    if cfg.name == "pdp":
        return PDPMethod(granularity, cfg.budget, cfg.tau)
    raise ValueError(f"method={cfg.name} is not implemented")
