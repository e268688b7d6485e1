"""Channel structure: one mask value per coupled channel group, shared by every parameter slice
on the output side of the channel (conv / linear rows and biases, BN scale and shift); the
groups come from Torch-Pruning (coupled.py), in transformers from the module layout: a group
channel is then a whole attention head (head_dim rows of q, k and v) or an FFN neuron
(heads.py). docs/methods.md#granularities, #pdp (channels).

Importance of a channel = the L2 norm of all weights that produce it (the rows of every coupled
conv / linear). Masking the BN scale and shift as well as the conv rows matters: a BN in
training mode undoes any scaling of the conv before it, so only a mask after the normalisation
really switches a channel off. After hardening a pruned channel outputs exactly zero
everywhere, so removing it (export.compact) changes no output.

`sparsity` here is the fraction of channels pruned (over all groups).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...errors import PdpruneError
from ...measure.results import LayerResult
from ..limits import check_channel_budget, target_channels
from ..masks import BinaryChannelMask, ForwardScope, SoftChannelMask
from ..selection import round_kept
from .base import ExportPlan, Structure
from .compaction import DensePositions, remap_optimizer, sliced, tensor_state
from .coupled import ChannelGroup, remove_channels
from .heads import heads_summary


def _plain(name: str) -> str:
    """A parametrized parameter's name as the module would have it without the mask."""
    return re.sub(r"\.parametrizations\.(\w+)\.original$", r".\1", name)


def _in_features(module: nn.Module) -> int:
    return _original(module, "weight").shape[1]


def _renumber_inputs(groups: list[ChannelGroup], remove: list[torch.Tensor]) -> None:
    """After a removal: every reader's input indices without the removed columns."""
    removed: dict[str, list[torch.Tensor]] = {}
    for group, gone in zip(groups, remove, strict=True):
        for side in group.inputs:
            removed.setdefault(side.name, []).append(side.idxs[gone[side.channels]])
    cut = {name: torch.cat(parts).sort().values for name, parts in removed.items()}
    for group, gone in zip(groups, remove, strict=True):
        for side in group.inputs:
            stays = ~gone[side.channels]
            idxs = side.idxs[stays]
            side.idxs = idxs - torch.searchsorted(cut[side.name], idxs)
            side.channels = side.channels[stays]


def _original(module: nn.Module, name: str) -> torch.Tensor:
    """A parameter before masking (what the optimizer updates)."""
    if parametrize.is_parametrized(module, name):
        return getattr(module.parametrizations, name).original
    return getattr(module, name)


def check_groups(groups: list[ChannelGroup], target: float, budget: str, round_to: int) -> None:
    """check_channel_budget over the groups; attention heads (head_dim rows each, whole units
    already) are never rounded to blocks of round_to."""
    check_channel_budget([g.channels for g in groups if g.kind != "heads"], target, budget,
                         round_to)
    check_channel_budget([g.channels for g in groups if g.kind == "heads"], target, budget, 1)


class GroupChannels:
    """A group's producers, and the channel norms computed from them (group channel order;
    a channel removed from the live model counts 0)."""

    def __init__(self, group: ChannelGroup, modules: dict[str, nn.Module], live_inputs=None):
        self.group, self.size, self.modules = group, group.channels, modules
        # name -> which input columns still read a live channel (None: all count)
        self.live_inputs = live_inputs

    def norms_squared(self) -> torch.Tensor:
        """||W_c||^2 per group channel, float32, in the autograd graph."""
        total = None
        for member in self.group.producers:
            weight = _original(self.modules[member.name], "weight").float()
            live = self.live_inputs(member.name) if self.live_inputs is not None else None
            if live is not None:  # weights that read a pruned channel are dead: not counted
                weight = weight * live.to(weight.device).reshape(1, -1, *[1] * (weight.dim() - 2))
            rows = weight.square().flatten(1).sum(1)
            if total is None:
                total = rows.new_zeros(self.size)
            total = total.index_add(0, member.gather.to(rows.device), rows)
        return total

    def norms(self) -> torch.Tensor:
        with torch.no_grad():
            return self.norms_squared().sqrt()


class ChannelSliceMask(nn.Module):
    """The parametrization on one parameter of a group member: p * m[gather], per out channel.

    Once the pruned channels have left the live model, a binary mask keeps every channel a
    member still has: the parameter then passes as it is (p * 1 is p, to the bit), without an
    elementwise product and its backward in every step of the compacted network."""

    def __init__(self, mask: SoftChannelMask | BinaryChannelMask, gather: torch.Tensor):
        super().__init__()
        self.source = [mask]  # a list: not a submodule, the structure owns the mask's state
        self.register_buffer("gather", gather.clone(), persistent=False)
        self._seen: tuple[int | None, bool] = (None, False)  # (mask version, keeps all)

    def _keeps_all(self, values: torch.Tensor) -> bool:
        version = self.source[0].version
        if version is None:
            return False
        if self._seen[0] != version:  # a host sync only when the binary mask changed
            self._seen = (version, bool(values[self.gather].all()))
        return self._seen[1]

    def forward(self, param: torch.Tensor) -> torch.Tensor:
        values = self.source[0].values()
        if values is None or self._keeps_all(values):
            return param
        m = values[self.gather].reshape(-1, *([1] * (param.dim() - 1)))
        # at least fp32 (a bf16 parameter under a soft mask), fp64 stays fp64
        wide = torch.promote_types(param.dtype, torch.float32)
        return (m * param.to(wide)).to(param.dtype)


class ChannelStructure(Structure):
    unit = "channels"
    shrinks_network = True  # each pruned channel makes the trained network smaller

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], left_dense: list[str],
                 tau: float | None, round_to: int = 1,
                 input_shape: tuple[int, ...] | None = None):
        self.model, self.groups, self.left_dense = model, groups, left_dense
        self.input_shape = input_shape  # traced by Torch-Pruning when channels are removed
        self.tau = tau  # soft (PDP) masks, else binary
        self.round_to = round_to  # kept channels per group: a multiple of this (or all)
        self.modules = dict(model.named_modules())
        # binary masks score channels by their live weights only (those reading kept channels):
        # what a compacted network keeps, so masked and compacted training are one function
        live = self.live_inputs if tau is None else None
        self.channels = [GroupChannels(g, self.modules, live) for g in groups]
        self.scope = ForwardScope()
        self.masks: list[SoftChannelMask | BinaryChannelMask] = []
        self._hooks: list = []
        self.kept: dict[str, torch.Tensor] = {}  # after finalize: root -> kept channels
        self.budget_kind = "uniform"  # what `target_pruned` in the summary counts
        # compaction: which group channels the live model still has, its dense layers' shapes
        self.present = [torch.ones(g.channels, dtype=torch.bool) for g in groups]
        self.dense_shapes = {m.name: tuple(self.modules[m.name].weight.shape)
                             for g in groups for m in g.producers}
        self.positions: DensePositions | None = None  # made at the first removal

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
        check_groups(self.groups, target, budget, self.round_to)

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
        heads = [g.kind == "heads" for g in self.groups]
        if not any(heads):
            return round_kept(self.sizes(), counts, self.round_to)
        settled = list(counts)  # heads are whole units already: rounded to 1, the rest apart
        for is_head, multiple in ((True, 1), (False, self.round_to)):
            idx = [i for i, h in enumerate(heads) if h == is_head]
            rounded = round_kept([self.groups[i].channels for i in idx],
                                 [counts[i] for i in idx], multiple)
            for i, count in zip(idx, rounded, strict=True):
                settled[i] = count
        return settled

    # --- sparsity as the summary counts it: a fraction of all coupled channels
    def fraction(self, counts: list[int]) -> float:
        return sum(counts) / max(1, self.num_channels)

    def achieved(self) -> float:
        return sum(int((~m.hard()).sum()) for m in self.masks) / max(1, self.num_channels)

    def achieved_by_layer(self) -> dict[str, float]:
        """A layer's share of its coupled group's channels that are pruned."""
        return {p.name: int((~m.hard()).sum()) / g.channels
                for g, m in zip(self.groups, self.masks, strict=True) for p in g.producers}

    # --- masks on, and off for good
    def attach(self) -> None:
        self.masks = [SoftChannelMask(c, self.tau, self.scope) if self.tau is not None
                      else BinaryChannelMask(c.size, self.device) for c in self.channels]
        self._mask_parameters()
        self._hooks = [self.model.register_forward_pre_hook(self.scope.enter),
                       self.model.register_forward_hook(self.scope.exit, always_call=True)]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _mask_parameters(self) -> None:
        for group, mask in zip(self.groups, self.masks, strict=True):
            for member in group.members:
                module = self.modules[member.name]
                for name in ("weight", "bias"):
                    if getattr(module, name, None) is not None:
                        parametrize.register_parametrization(
                            module, name, ChannelSliceMask(mask, member.gather.to(self.device)))

    def _unmask_parameters(self) -> None:
        """Parametrizations off, the trained values left as they are (not baked)."""
        for group in self.groups:
            for member in group.members:
                self._unmask(member)

    def _unmask(self, member) -> list[torch.Tensor]:
        """A member's parametrizations off; returns the parameters that had one."""
        module, unmasked = self.modules[member.name], []
        for name in ("weight", "bias"):
            if parametrize.is_parametrized(module, name):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
                unmasked.append(getattr(module, name))
        return unmasked

    def live_inputs(self, name: str) -> torch.Tensor | None:
        """Over `name`'s input columns: False where it reads a channel a mask prunes."""
        live = None
        for group, mask in zip(self.groups, self.masks, strict=True):
            for side in group.inputs:
                if side.name == name:
                    if live is None:
                        live = torch.ones(_in_features(self.modules[name]), dtype=torch.bool)
                    live[side.idxs] = mask.hard()[side.channels]
        return live

    # --- compaction: pruned channels leave the live model
    @property
    def final(self) -> bool:
        """Whether the masks' decisions are final: binary masks keep the largest masked
        norms, so a pruned channel (norm 0) never comes back; soft masks decide at hardening."""
        return all(m.needs_scores for m in self.masks)

    def _removable(self, remove: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """{root: the root's live channel indices} of the group channels in `remove`."""
        pruned = {}
        for group, gone in zip(self.groups, remove, strict=True):
            root = next(m for m in group.members if m.name == group.root)
            idxs = gone[root.gather.cpu()].nonzero().flatten()
            if len(idxs):
                pruned[group.root] = idxs
        return pruned

    @torch.no_grad()
    def harden(self, keeps: list[torch.Tensor] | None = None) -> None:
        """Soft masks become binary masks keeping what m >= 0.5 keeps (or `keeps`, from a
        checkpoint); from then on channels score by their live weights, as binary masks do."""
        if self.final:
            return
        keeps = keeps or [mask.hard() for mask in self.masks]
        binary = []
        for channels, keep in zip(self.channels, keeps, strict=True):
            hard = BinaryChannelMask(channels.size, self.device)
            hard.load_state_dict({"keep": keep}, 0)
            binary.append(hard)
        self._unmask_parameters()
        self.masks = binary
        self._mask_parameters()
        for channels in self.channels:
            channels.live_inputs = self.live_inputs

    @torch.no_grad()
    def compact(self, optimizer: torch.optim.Optimizer | None) -> bool:
        """Remove from the live model every channel the (final) masks prune; the optimizer's
        parameters and state follow. Returns whether the model changed."""
        if not self.final:
            return False
        remove = [p & ~m.hard() for p, m in zip(self.present, self.masks, strict=True)]
        if not any(r.any() for r in remove):
            return False
        self._remove(remove, optimizer)
        return True

    def _remove(self, remove: list[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        pruned = self._removable(remove)
        before = dict(self.model.named_parameters())
        self._unmask_parameters()
        plain = dict(self.model.named_parameters())
        attached = {_plain(n): n for n in before}
        state = tensor_state(optimizer, plain) if optimizer is not None else {}
        param = next(self.model.parameters())
        example = torch.zeros((1, *self.input_shape), device=param.device, dtype=param.dtype)
        cut = {key: sliced(self.model, example, pruned, values) for key, values in state.items()}
        if self.positions is None:
            self.positions = DensePositions(self.model)
        self.positions.remove(example, pruned)
        remove_channels(self.model, example, pruned)
        for group, gone in zip(self.groups, remove, strict=True):
            for member in group.members:
                member.gather = member.gather[~gone[member.gather.cpu()].to(member.gather.device)]
        _renumber_inputs(self.groups, remove)
        self.present = [p & ~r for p, r in zip(self.present, remove, strict=True)]
        self.modules = dict(self.model.named_modules())
        for channels in self.channels:
            channels.modules = self.modules
        self._mask_parameters()
        if optimizer is not None:
            after = {_plain(n): p for n, p in self.model.named_parameters()}
            by_name = {attached.get(n, n): after[n] for n in after}
            per_param = {}
            for key, values in cut.items():
                for name, value in values.items():
                    per_param.setdefault(attached.get(name, name), {})[key] = value
            remap_optimizer(optimizer, before, by_name, per_param)

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
                for param in self._unmask(member):  # zeros baked into every output slice
                    kept = keep.to(param.device)[member.gather.to(param.device)]
                    param.mul_(kept.reshape(-1, *([1] * (param.dim() - 1))))
                if member.producer:  # counted in the dense layer: removed rows are pruned too
                    shape = self.dense_shapes[member.name]
                    row, removed = math.prod(shape[1:]), shape[0] - len(member.gather)
                    zero_rows = int((module.weight.flatten(1) == 0).all(dim=1).sum())
                    unit = group.rows * row  # weights per group channel (a head: head_dim rows)
                    results.append(LayerResult(member.name, shape, shape[0] * row, count * unit,
                                               (zero_rows + removed) * row, ties * unit))
        order = {name: i for i, name in enumerate(self.modules)}
        return sorted(results, key=lambda r: order[r.name])

    def pruned_channels(self) -> dict[str, torch.Tensor]:
        """After finalize: {root layer: live root channel indices still to remove}, for a
        compact export."""
        return self._removable([p & ~self.kept[g.root] for p, g in zip(self.present,
                                                                       self.groups, strict=True)])

    def export_plan(self) -> ExportPlan:
        dense = None if self.positions is None else \
            self.positions.dense_state(self.model.state_dict())
        return ExportPlan(removed_units=self.pruned_channels(), dense_state=dense)

    def summary(self, counts: list[int], target: float) -> dict:
        pruned = sum(int((~k).sum()) for k in self.kept.values())
        return {"channels": {"groups": len(self.groups), "total": self.num_channels,
                "pruned": pruned,
                "fraction": pruned / max(1, self.num_channels),
                "expected_pruned": sum(counts), "round_to": self.round_to,
                # before rounding to blocks (round_kept): what the target asked for
                "target_pruned": target_channels(self.sizes(), target, self.budget_kind)},
                **({"heads": heads} if (heads := heads_summary(self.groups, self.kept)) else {})}

    # --- checkpoints
    def state_dict(self) -> dict:
        return {"masks": [m.state_dict() for m in self.masks], "hardened": self.final,
                "present": [p.clone() for p in self.present]}

    def load_state_dict(self, state: dict, counts: list[int],
                        optimizer: torch.optim.Optimizer | None = None) -> None:
        """Masks back, and the live model compacted as the saved one was (call before loading
        the model's weights: they have the compacted shapes)."""
        if state.get("hardened") and not self.final:  # soft masks hardened before the save
            self.harden([mask_state["keep"] for mask_state in state["masks"]])
        for mask, mask_state, count in zip(self.masks, state["masks"], counts, strict=True):
            mask.load_state_dict(mask_state, count)
        gone = [p & ~q for p, q in zip(self.present, state.get("present", self.present),
                                       strict=True)]
        if any(g.any() for g in gone):
            self._remove(gone, optimizer)
