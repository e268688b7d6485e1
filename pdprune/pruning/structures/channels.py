"""Channel structure: one mask value per coupled channel group, shared by every parameter slice
on the output side of the channel (conv / linear rows and biases, BN scale and shift); the
groups come from Torch-Pruning (coupled.py). docs/methods.md#granularities, #pdp (channels).

Importance of a channel = the L2 norm of all weights that produce it (the rows of every coupled
conv / linear). Masking the BN scale and shift as well as the conv rows matters: a BN in
training mode undoes any scaling of the conv before it, so only a mask after the normalisation
really switches a channel off. After hardening a pruned channel outputs exactly zero
everywhere, so removing it (export.compact) changes no output.

`sparsity` here is the fraction of channels pruned (over all groups).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import PdpruneError
from ...measure.results import LayerResult
from ..limits import check_channel_budget, target_channels
from ..masks import BinaryChannelMask, ForwardScope, SoftChannelMask
from ..selection import round_kept
from .base import ExportPlan, Structure
from .coupled import ChannelGroup, remove_channels


def _original(module: nn.Module, name: str) -> torch.Tensor:
    """A parameter before masking (what the optimizer updates)."""
    if parametrize.is_parametrized(module, name):
        return getattr(module.parametrizations, name).original
    return getattr(module, name)


class GroupChannels:
    """A group's producers, and the channel norms computed from them (group channel order)."""

    def __init__(self, group: ChannelGroup, modules: dict[str, nn.Module]):
        self.group, self.size = group, group.channels
        self.producers = [(modules[p.name], torch.argsort(p.gather)) for p in group.producers]

    def norms_squared(self) -> torch.Tensor:
        """||W_c||^2 per group channel, float32, in the autograd graph."""
        total = None
        for module, order in self.producers:
            rows = _original(module, "weight").float().square().flatten(1).sum(1)
            rows = rows[order.to(rows.device)]
            total = rows if total is None else total + rows
        return total

    def norms(self) -> torch.Tensor:
        with torch.no_grad():
            return self.norms_squared().sqrt()


class ChannelSliceMask(nn.Module):
    """The parametrization on one parameter of a group member: p * m[gather], per out channel."""

    def __init__(self, mask: SoftChannelMask | BinaryChannelMask, gather: torch.Tensor):
        super().__init__()
        self.source = [mask]  # a list: not a submodule, the structure owns the mask's state
        self.register_buffer("gather", gather.clone(), persistent=False)

    def forward(self, param: torch.Tensor) -> torch.Tensor:
        values = self.source[0].values()
        if values is None:
            return param
        m = values[self.gather].reshape(-1, *([1] * (param.dim() - 1)))
        return (m * param.float()).to(param.dtype)


class ChannelStructure(Structure):
    unit = "channels"
    shrinks_network = True  # each pruned channel makes the trained network smaller

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], left_dense: list[str],
                 tau: float | None, round_to: int = 1):
        self.model, self.groups, self.left_dense = model, groups, left_dense
        self.tau = tau  # soft (PDP) masks, else binary
        self.round_to = round_to  # kept channels per group: a multiple of this (or all)
        self.modules = dict(model.named_modules())
        self.channels = [GroupChannels(g, self.modules) for g in groups]
        self.scope = ForwardScope()
        self.masks: list[SoftChannelMask | BinaryChannelMask] = []
        self._hooks: list = []
        self.kept: dict[str, torch.Tensor] = {}  # after finalize: root -> kept channels
        self.budget_kind = "uniform"  # what `target_pruned` in the summary counts

    # --- units
    @property
    def names(self) -> list[str]:
        return [p.name for g in self.groups for p in g.producers]

    def sizes(self) -> list[int]:
        return [g.channels for g in self.groups]

    @property
    def num_channels(self) -> int:
        return sum(self.sizes())

    @property
    def num_prunable(self) -> int:
        return sum(self.modules[name].weight.numel() for name in self.names)

    def check(self, target: float, budget: str) -> None:
        self.budget_kind = budget
        check_channel_budget(self.sizes(), target, budget, self.round_to)

    @torch.no_grad()
    def magnitudes(self, i: int) -> torch.Tensor:
        """Channel norms; under a binary mask those of the masked weights (a pruned channel
        scores 0 and never comes back)."""
        norms, mask = self.channels[i].norms(), self.masks[i]
        if mask.needs_scores:
            return norms * mask.hard().to(norms.device)
        return norms

    def comparable(self, scores: torch.Tensor) -> torch.Tensor:
        """Norms divided by their group's mean, so that groups with more (or larger) producers
        compare in one global cut (Torch-Pruning's convention)."""
        return scores / scores.mean().clamp_min(1e-12)

    def settle(self, counts: list[int], sparsity: float) -> list[int]:
        return round_kept(self.sizes(), counts, self.round_to)

    # --- sparsity as the summary counts it: a fraction of all coupled channels
    def fraction(self, counts: list[int]) -> float:
        return sum(counts) / max(1, self.num_channels)

    def achieved(self) -> float:
        return sum(int((~m.hard()).sum()) for m in self.masks) / max(1, self.num_channels)

    # --- masks on, and off for good
    def attach(self) -> None:
        device = next(self.model.parameters()).device
        self.masks = [SoftChannelMask(c, self.tau, self.scope) if self.tau is not None
                      else BinaryChannelMask(c.size, device) for c in self.channels]
        for group, mask in zip(self.groups, self.masks, strict=True):
            for member in group.members:
                module = self.modules[member.name]
                for name in ("weight", "bias"):
                    if getattr(module, name, None) is not None:
                        parametrize.register_parametrization(
                            module, name, ChannelSliceMask(mask, member.gather))
        self._hooks = [self.model.register_forward_pre_hook(self.scope.enter),
                       self.model.register_forward_hook(self.scope.exit, always_call=True)]

    @torch.no_grad()
    def finalize(self, counts: list[int]) -> list[LayerResult]:
        """Bake zeros into every output-side slice, drop the parametrizations, and check each
        group's pruned count against its budget."""
        for hook in self._hooks:
            hook.remove()
        results = []
        for group, mask, count in zip(self.groups, self.masks, counts, strict=True):
            keep, ties = mask.hard().clone(), mask.ties()
            pruned = int((~keep).sum())
            if abs(pruned - count) > ties:
                raise PdpruneError(f"{group.root}: hardened channel mask prunes {pruned} of "
                                   f"{group.channels} channels, the budget asked for {count}")
            self.kept[group.root] = keep
            for member in group.members:
                module = self.modules[member.name]
                for name in ("weight", "bias"):
                    if parametrize.is_parametrized(module, name):
                        parametrize.remove_parametrizations(module, name,
                                                            leave_parametrized=False)
                        param = getattr(module, name)
                        kept = keep.to(param.device)[member.gather.to(param.device)]
                        param.mul_(kept.reshape(-1, *([1] * (param.dim() - 1))))
                if member.producer:
                    weight, row = module.weight, module.weight[0].numel()
                    zero_rows = int((weight.flatten(1) == 0).all(dim=1).sum())
                    results.append(LayerResult(member.name, tuple(weight.shape), weight.numel(),
                                               count * row, zero_rows * row, ties * row))
        order = {name: i for i, name in enumerate(self.modules)}
        return sorted(results, key=lambda r: order[r.name])

    def pruned_channels(self) -> dict[str, torch.Tensor]:
        """After finalize: {root layer: root channel indices removed}, for a compact export."""
        return {root: (~keep).nonzero().flatten() for root, keep in self.kept.items()}

    def export_plan(self) -> ExportPlan:
        return ExportPlan(removed_units=self.pruned_channels())

    @torch.no_grad()
    def shrink(self, dense: nn.Module, counts: list[int],
               input_shape: tuple[int, ...]) -> nn.Module:
        """`dense` (this architecture, unpruned) with counts[g] channels removed from group g:
        the network a run trains with these counts. Only counts matter for its cost, not which
        channels, so the first ones go."""
        pruned = {g.root: torch.arange(c) for g, c in zip(self.groups, counts, strict=True) if c}
        dense = dense.cpu().eval()
        if not pruned:  # a dense network needs no dependency graph
            return dense
        return remove_channels(dense, torch.zeros((1, *input_shape)), pruned)

    def summary(self, counts: list[int], target: float) -> dict:
        pruned = sum(int((~k).sum()) for k in self.kept.values())
        return {"channels": {"groups": len(self.groups), "total": self.num_channels,
                "pruned": pruned,
                "fraction": pruned / max(1, self.num_channels),
                "expected_pruned": sum(counts), "round_to": self.round_to,
                # before rounding to blocks (round_kept): what the target asked for
                "target_pruned": target_channels(self.sizes(), target, self.budget_kind)}}

    # --- checkpoints
    def state_dict(self) -> dict:
        return {"masks": [m.state_dict() for m in self.masks]}

    def load_state_dict(self, state: dict, counts: list[int]) -> None:
        for mask, mask_state, count in zip(self.masks, state["masks"], counts, strict=True):
            mask.load_state_dict(mask_state, count)
