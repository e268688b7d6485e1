"""Channel pruning: one mask value per coupled channel group, shared by every parameter slice on
the output side of the channel (conv / linear rows and biases, BN scale and shift).

Importance of a channel = the L2 norm of all weights that produce it (the rows of every coupled
conv / linear), METHODS.md section 1, channel variant. Masking the BN scale and shift as well as
the conv rows matters: a BN in training mode undoes any scaling of the conv before it, so only
a mask after the normalisation really switches a channel off. After hardening a pruned channel
outputs exactly zero everywhere, so removing it (export.compact) changes no output.

`sparsity` here is the fraction of channels pruned (over all groups).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import PdpruneError
from .budgets import check_channel_budget, target_channels
from .channel_groups import ChannelGroup
from .epi_channels import EPIWatch
from .pruner import LayerResult, LoopHooks
from .schedules import EPISchedule, Schedule
from .selection import (
    ThresholdSearch,
    global_budget,
    keep_largest,
    midpoint_threshold,
    round_kept,
    uniform_budget,
)


def _original(module: nn.Module, name: str) -> torch.Tensor:
    """A parameter before masking (what the optimizer updates)."""
    if parametrize.is_parametrized(module, name):
        return getattr(module.parametrizations, name).original
    return getattr(module, name)


class GroupChannels:
    """A group's producers, and the channel norms computed from them (group channel order)."""

    def __init__(self, group: ChannelGroup, modules: dict[str, nn.Module]):
        self.group = group
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


class ForwardScope:
    """Marks one forward of the model. Every member of a group (a stage's convs and BNs: a
    dozen parameters) reads the group's mask; inside one forward the weights are fixed, so the
    mask is computed once and shared, in one autograd graph. Outside a forward nothing is
    cached."""

    def __init__(self):
        self.active = False
        self.generation = 0

    def enter(self, *_) -> None:
        self.active = True
        self.generation += 1

    def exit(self, *_) -> None:
        self.active = False


class SoftChannelMask:
    """PDP on channels: m_c = sigmoid((||W_c||^2 - t^2) / tau), t the midpoint of the channel
    norms either side of the cut; t detached, m in the autograd graph."""

    def __init__(self, channels: GroupChannels, tau: float, scope: ForwardScope | None = None):
        self.channels, self.tau = channels, tau
        self.pruned = 0
        self.search = ThresholdSearch()
        self.scope = scope or ForwardScope()
        self._cached: tuple[int, torch.Tensor] | None = None

    def values(self) -> torch.Tensor | None:
        if self.pruned == 0:
            return None
        if not self.scope.active:
            return self._compute()
        if self._cached is None or self._cached[0] != self.scope.generation:
            self._cached = (self.scope.generation, self._compute())
        return self._cached[1]

    def _compute(self) -> torch.Tensor:
        squares = self.channels.norms_squared()
        if self.pruned >= squares.numel():
            return torch.zeros_like(squares)
        with torch.no_grad():
            t = self.search(squares.detach().sqrt().reshape(1, -1), self.pruned).reshape(())
        return torch.sigmoid((squares - t * t) / self.tau)

    @torch.no_grad()
    def hard(self) -> torch.Tensor:
        values = self.values()
        if values is None:
            return torch.ones(self.channels.group.channels, dtype=torch.bool)
        return (values >= 0.5).cpu()

    @torch.no_grad()
    def ties(self) -> int:
        channels = self.channels.group.channels
        if not 0 < self.pruned < channels:
            return 0
        norms = self.channels.norms().reshape(1, -1)
        t = midpoint_threshold(norms, self.pruned)
        return int(torch.isclose(norms, t.expand_as(norms), rtol=1e-6, atol=0).sum())


class BinaryChannelMask:
    """Magnitude / random on channels: a stored keep vector, recomputed when the target moves."""

    def __init__(self, channels: GroupChannels):
        self.channels = channels
        self.keep = torch.ones(channels.group.channels, dtype=torch.bool)
        self.pruned = 0
        self._values: torch.Tensor | None = None

    def values(self) -> torch.Tensor | None:
        if self.pruned == 0:
            return None
        return self._values

    def set_keep(self, keep: torch.Tensor, device: torch.device) -> None:
        self.keep = keep.cpu()
        self.pruned = int((~self.keep).sum())
        self._values = self.keep.to(device=device, dtype=torch.float32)

    def hard(self) -> torch.Tensor:
        return self.keep

    def ties(self) -> int:
        return 0


class ChannelSliceMask(nn.Module):
    """The parametrization on one parameter of a group member: p * m[gather], per out channel."""

    def __init__(self, mask: SoftChannelMask | BinaryChannelMask, gather: torch.Tensor):
        super().__init__()
        self.source = [mask]  # a list: not a submodule, the pruner owns the mask's state
        self.register_buffer("gather", gather.clone(), persistent=False)

    def forward(self, param: torch.Tensor) -> torch.Tensor:
        values = self.source[0].values()
        if values is None:
            return param
        m = values[self.gather].reshape(-1, *([1] * (param.dim() - 1)))
        return (m * param.float()).to(param.dtype)


class ChannelPruner(LoopHooks):
    """Drives channel masks from the schedule; the same interface as Pruner."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], method: str, budget: str,
                 schedule: Schedule, left_dense: list[str], tau: float = 1e-4, seed: int = 0,
                 round_to: int = 1):
        self.model, self.groups, self.schedule = model, groups, schedule
        self.method, self.budget, self.seed = method, budget, seed
        self.round_to = round_to  # kept channels per group: a multiple of this (or all)
        self.left_dense = left_dense
        # EPI's sub-network is one cut over all groups, whatever method.budget says
        self.budget_kind = "global" if isinstance(schedule, EPISchedule) else budget
        check_channel_budget([g.channels for g in groups], schedule.target, self.budget_kind,
                             round_to)
        self.modules = dict(model.named_modules())
        channels = [GroupChannels(g, self.modules) for g in groups]
        self.scope = ForwardScope()
        self.masks = [SoftChannelMask(c, tau, self.scope) if method == "pdp"
                      else BinaryChannelMask(c) for c in channels]
        self._hooks: list = []
        self.budgets: list[int] | None = None  # PDP: channels per group, set once
        self.sparsity = 0.0
        self.counts = [0] * len(groups)
        self._random: list[torch.Tensor] | None = None
        # schedule=epi: the indicator decides when, and its sub-network how many per group
        self.epi = EPIWatch(groups, self.modules, schedule) \
            if isinstance(schedule, EPISchedule) else None
        self.planned: list[int] | None = None  # pruned per group at the target, fixed by EPI
        self.epoch_counts: list[list[int]] = []  # pruned per group at each epoch's end

    # --- what the summary and the loop read
    @property
    def layers(self) -> list[str]:
        return [p.name for g in self.groups for p in g.producers]

    @property
    def final_sparsity(self) -> float:
        return self.schedule.target

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_channels(self) -> int:
        return sum(g.channels for g in self.groups)

    @property
    def num_prunable(self) -> int:
        return sum(self.modules[name].weight.numel() for name in self.layers)

    @property
    def target_sparsity(self) -> float:
        return sum(self.counts) / max(1, self.num_channels)

    def achieved_sparsity(self) -> float:
        return sum(int((~m.hard()).sum()) for m in self.masks) / max(1, self.num_channels)

    # --- the loop's calls
    def attach(self) -> ChannelPruner:
        for group, mask in zip(self.groups, self.masks, strict=True):
            for member in group.members:
                module = self.modules[member.name]
                for name in ("weight", "bias"):
                    if getattr(module, name, None) is not None:
                        parametrize.register_parametrization(
                            module, name, ChannelSliceMask(mask, member.gather))
        self._hooks = [self.model.register_forward_pre_hook(self.scope.enter),
                       self.model.register_forward_hook(self.scope.exit, always_call=True)]
        return self

    def before_step(self, step: int) -> None:
        target = self.schedule.sparsity_at(step)
        if target != self.sparsity:
            self.set_sparsity(target)

    def after_backward(self) -> None:
        if self.epi is not None:
            self.epi.after_backward()

    def end_epoch(self, epochs_done: int) -> dict:
        self.epoch_counts.append(list(self.counts))
        if self.epi is None:
            return {}
        record = self.epi.end_epoch(epochs_done)
        if "epi_prune" in record:
            sizes = [g.channels for g in self.groups]
            self.planned = round_kept(sizes, self.epi.planned_pruned(), self.round_to)
        return record

    @torch.no_grad()
    def set_sparsity(self, sparsity: float) -> None:
        self.counts = self._counts(sparsity)
        for mask, count, scores in zip(self.masks, self.counts, self._scores(), strict=True):
            if isinstance(mask, SoftChannelMask):
                mask.pruned = count
            else:
                mask.set_keep(keep_largest(scores.reshape(1, -1), count)[0], self.device)
        self.sparsity = sparsity

    def _scores(self) -> list[torch.Tensor]:
        """Per group channel scores: norms of the masked weights (a pruned channel scores 0 and
        never comes back), or fixed random scores for method=random."""
        if self.method == "random":
            if self._random is None:
                gen = torch.Generator().manual_seed(self.seed)
                self._random = [torch.rand(g.channels, generator=gen) for g in self.groups]
            return self._random
        scores = [m.channels.norms() for m in self.masks]
        if self.method == "pdp":
            return scores
        return [s * m.keep.to(s.device) for s, m in zip(scores, self.masks, strict=True)]

    def _counts(self, sparsity: float) -> list[int]:
        final = self.schedule.target
        if sparsity == 0 or final == 0:
            return [0] * len(self.groups)
        if self.planned is not None:
            return [round(sparsity / final * p) for p in self.planned]
        if self.method == "pdp":
            if self.budgets is None:  # once, at the end of warm-up, for the final target
                self.budgets = self._budget(final)
            return [round(sparsity / final * b) for b in self.budgets]
        return self._budget(sparsity)

    def _budget(self, sparsity: float) -> list[int]:
        sizes = [g.channels for g in self.groups]
        if self.budget == "uniform":
            counts = uniform_budget(sizes, sparsity)
        else:
            # one cut over all channels; norms divided by their group's mean so that groups
            # with more (or larger) producers are comparable (Torch-Pruning's convention)
            scores = [s / s.mean().clamp_min(1e-12) for s in self._scores()]
            counts = global_budget(scores, sparsity)
        return round_kept(sizes, counts, self.round_to)

    # --- the end
    @torch.no_grad()
    def finalize(self) -> list[LayerResult]:
        """Harden (m >= 0.5), bake zeros into every output-side slice, drop the
        parametrizations, and check each group's pruned count against its budget."""
        if self.sparsity != self.schedule.target:
            self.set_sparsity(self.schedule.target)
        for hook in self._hooks:
            hook.remove()
        results = []
        self.kept: dict[str, torch.Tensor] = {}
        for group, mask, count in zip(self.groups, self.masks, self.counts, strict=True):
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

    def channel_summary(self) -> dict:
        pruned = sum(int((~k).sum()) for k in self.kept.values())
        return {"groups": len(self.groups), "total": self.num_channels, "pruned": pruned,
                "fraction": pruned / max(1, self.num_channels),
                "expected_pruned": sum(self.counts), "round_to": self.round_to,
                # before rounding to blocks (round_kept): what the target asked for
                "target_pruned": target_channels([g.channels for g in self.groups],
                                                 self.schedule.target, self.budget_kind)}

    def state_dict(self) -> dict:
        keeps = [m.keep.clone() for m in self.masks if isinstance(m, BinaryChannelMask)]
        return {"sparsity": self.sparsity, "counts": list(self.counts), "budgets": self.budgets,
                "keeps": keeps, "planned": self.planned,
                "epoch_counts": [list(c) for c in self.epoch_counts],
                "epi": self.epi.state_dict() if self.epi is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.sparsity, self.counts = state["sparsity"], list(state["counts"])
        self.budgets = state["budgets"]
        self.planned = state["planned"]
        self.epoch_counts = [list(c) for c in state["epoch_counts"]]
        if self.epi is not None:
            self.epi.load_state_dict(state["epi"])
        keeps = iter(state["keeps"])
        for mask, count in zip(self.masks, self.counts, strict=True):
            if isinstance(mask, SoftChannelMask):
                mask.pruned = count
            else:
                mask.set_keep(next(keeps), self.device)
