"""Weight structures: one mask group per layer, its units single weights (unstructured) or the
weights of N:M groups (granularity.py). Units stay in the network as zeros: nothing can be
removed physically (a dense layer with zeros is as large as before)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import PdpruneError
from ...measure.results import LayerResult
from ..limits import check_cut, check_weight_budget
from ..masks import BinaryMask, PDPSoftMask
from .base import ExportPlan, Structure
from .granularity import Granularity

MaskFactory = Callable[[torch.Tensor, Granularity], nn.Module]


@dataclass
class Layer:
    """One prunable layer: its name, module and the mask parametrization on its weight."""

    name: str
    module: nn.Module
    mask: BinaryMask | PDPSoftMask | None = None

    @property
    def original(self) -> torch.Tensor:
        """The trained weight before masking (what the optimizer updates)."""
        if self.mask is None:
            return self.module.weight
        return self.module.parametrizations.weight.original


class WeightStructure(Structure):
    """Masks on the weights of `targets`; layers whose shape the granularity cannot cover
    (N:M where M does not divide the input dimension) stay dense."""

    def __init__(self, targets: list[tuple[str, nn.Module]], granularity: Granularity,
                 tau: float | None, make_mask: MaskFactory | None = None):
        self.granularity, self.tau = granularity, tau  # tau: soft (PDP) masks, else binary
        # a method's own mask (a parametrization of the weight); None: binary, or PDP's by tau
        self.make_mask = make_mask
        self.layers = [Layer(name, m) for name, m in targets if granularity.supports(m.weight)]
        self.left_dense = [name for name, m in targets if not granularity.supports(m.weight)]
        self.results: list[LayerResult] | None = None  # once finalized

    # --- units
    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def masks(self) -> list[BinaryMask | PDPSoftMask]:
        return [layer.mask for layer in self.layers]

    @property
    def fixed_per_row(self) -> int | None:
        return self.granularity.pruned_per_row

    def sizes(self) -> list[int]:
        return [self.granularity.units_per_row(layer.original) for layer in self.layers]

    @property
    def num_prunable(self) -> int:
        return sum(layer.original.numel() for layer in self.layers)

    def check(self, target: float, budget: str) -> None:
        if self.fixed_per_row is None:  # N:M keeps n >= 1 per group by design
            check_weight_budget(list(zip(self.names, self.sizes(), strict=True)), target, budget)

    @torch.no_grad()
    def magnitudes(self, i: int) -> torch.Tensor:
        """(rows, units) |w| of the weights as the layer sees them under a binary mask (a
        pruned weight scores 0 and never comes back); unmasked under a soft one."""
        layer = self.layers[i]
        return self.granularity.magnitudes(layer.mask.masked(layer.original))

    def comparable(self, scores: torch.Tensor) -> torch.Tensor:
        return scores  # weights of all layers compare as they are

    def settle(self, counts: list[int], sparsity: float) -> list[int]:
        """A cut is checked once the weights are known: it must leave each layer a weight."""
        check_cut(list(zip(self.names, self.sizes(), strict=True)), counts, sparsity)
        return counts

    # --- sparsity as the summary counts it: a fraction of the prunable weights
    def final_sparsity(self, target: float) -> float:
        fixed = self.fixed_per_row
        return target if fixed is None else fixed / self.granularity.m

    def fraction(self, counts: list[int]) -> float:
        pruned = sum(self._weights_pruned(layer, count)
                     for layer, count in zip(self.layers, counts, strict=True))
        return pruned / max(1, self.num_prunable)

    @torch.no_grad()
    def achieved(self) -> float:
        """Pruned by the hardened masks (after finalize: by the masks that were baked)."""
        if self.results is not None:
            return sum(r.pruned for r in self.results) / max(1, self.num_prunable)
        return sum(self._zeros()) / max(1, self.num_prunable)

    @torch.no_grad()
    def achieved_by_layer(self) -> dict[str, float]:
        return {layer.name: zeros / layer.original.numel()
                for layer, zeros in zip(self.layers, self._zeros(), strict=True)}

    def _zeros(self) -> list[int]:
        return [int((~m.hard(layer.original)).sum())
                for layer, m in zip(self.layers, self.masks, strict=True)]

    def _weights_pruned(self, layer: Layer, count: int) -> int:
        weight = layer.original
        return count * weight.numel() // self.granularity.units_per_row(weight)

    # --- masks on, and off for good
    def attach(self) -> None:
        for layer in self.layers:
            layer.mask = self.make_mask(layer.module.weight, self.granularity) \
                if self.make_mask is not None \
                else PDPSoftMask(self.granularity, self.tau) if self.tau is not None \
                else BinaryMask(layer.module.weight, self.granularity)
            parametrize.register_parametrization(layer.module, "weight", layer.mask)

    @torch.no_grad()
    def finalize(self, counts: list[int]) -> list[LayerResult]:
        """Bake the hardened masks into the weights, remove the parametrizations, and check
        each layer against its budget (to the element, up to ties on the threshold)."""
        results = []
        for layer, count in zip(self.layers, counts, strict=True):
            weight = layer.original
            hard, ties = layer.mask.hard(weight).clone(), layer.mask.ties(weight)
            baked = layer.mask.baked(weight)  # w * hard; STR: its shrunk weights
            expected = self._weights_pruned(layer, count)
            parametrize.remove_parametrizations(layer.module, "weight", leave_parametrized=False)
            layer.module.weight.copy_(baked)
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
        self.results = results
        return results

    def _group_check(self, weight: torch.Tensor, count: int) -> tuple[int | None, int | None]:
        """N:M: (groups, groups with exactly n non-zeros) of a baked weight."""
        if self.fixed_per_row is None:
            return None, None
        nonzero = (self.granularity.magnitudes(weight) != 0).sum(dim=-1)
        kept = self.granularity.units_per_row(weight) - count
        return len(nonzero), int((nonzero == kept).sum())

    def export_plan(self) -> ExportPlan:
        return ExportPlan(reason=f"granularity={self.granularity.name} leaves zeros inside "
                          "dense layers; only whole channels (granularity=channel) can be "
                          "removed", pattern=self.granularity.pattern)

    # --- checkpoints: the binary masks are buffers of the model (its state_dict has them)
    def load_state_dict(self, state: dict, counts: list[int],
                        optimizer: torch.optim.Optimizer | None = None) -> None:
        for mask, count in zip(self.masks, counts, strict=True):
            mask.pruned = count


class DenseStructure(Structure):
    """method=dense: no masks; reports the layers it would have pruned, with their zeros."""

    def __init__(self, targets: list[tuple[str, nn.Module]]):
        self.layers = [Layer(name, module) for name, module in targets]
        self.names = [name for name, _ in targets]
        self.num_prunable = sum(layer.original.numel() for layer in self.layers)

    def final_sparsity(self, target: float) -> float:
        return 0.0

    @torch.no_grad()
    def achieved(self) -> float:
        zeros = sum(int((layer.original == 0).sum()) for layer in self.layers)
        return zeros / max(1, self.num_prunable)

    @torch.no_grad()
    def finalize(self, counts: list[int]) -> list[LayerResult]:
        return [LayerResult(layer.name, tuple(layer.original.shape), layer.original.numel(), 0,
                            int((layer.original == 0).sum()), 0) for layer in self.layers]

    def export_plan(self) -> ExportPlan:
        return ExportPlan(reason="method=dense prunes nothing")
