"""Coupled output channels, found and removed by Torch-Pruning's dependency graph.

Channels that must go together (a residual add, the BN after a conv, a depthwise conv that maps
channel c to channel c) form one group; a channel mask is one value per group channel, shared
by every parameter slice on the output side of that channel. This is the only module that
talks to Torch-Pruning: the rest of pdprune sees plain names and index tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ...errors import PdpruneError

PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class OutputSide:
    """One module whose output channels are (a permutation of) a group's channels.

    `gather[c]` is the group channel that the module's channel c carries, so a group mask `m`
    becomes the module's per-channel mask `m[gather]`.
    """

    name: str
    gather: torch.Tensor
    producer: bool  # a conv / linear: its weight rows define the channel's importance


@dataclass
class InputSide:
    """A conv / linear that reads a group's channels: its input index `idxs[k]` carries group
    channel `channels[k]` (a linear after a flatten reads each channel at several indices)."""

    name: str
    idxs: torch.Tensor
    channels: torch.Tensor


@dataclass
class ChannelGroup:
    """Coupled output channels, in the index order of the root layer's output channels."""

    root: str
    channels: int
    members: list[OutputSide] = field(default_factory=list)
    inputs: list[InputSide] = field(default_factory=list)
    rows: int = 1  # output rows of a producer per group channel (an attention head: head_dim)
    kind: str = "channels"  # or, in transformers (heads.py): "heads" | "neurons"
    owner: str = ""  # heads: the attention module whose head count they are

    @property
    def producers(self) -> list[OutputSide]:
        return [m for m in self.members if m.producer]


def _dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with torch.enable_grad():  # the graph is traced through autograd
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)


def find_channel_groups(model: nn.Module, example: torch.Tensor, roots: list[str],
                        ignored: list[str]) -> list[ChannelGroup]:
    """The coupled channel groups that produce output channels of one of `roots` (conv / linear
    names); a group's channels are indexed as Torch-Pruning's root layer of the group indexes
    them (it may be a depthwise conv that is not itself a root).

    A group that would change the output channels of an `ignored` layer (the classifier, layers
    a config excludes) is left out whole. Traced on a copy in eval mode, so the model's weights
    and BN statistics are untouched.
    """
    traced = copy.deepcopy(model).eval()
    modules = dict(traced.named_modules())
    names = {module: name for name, module in modules.items()}
    graph = _dependency_graph(traced, example.to(next(traced.parameters()).device))
    root_set = set(roots)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[modules[n] for n in ignored],
                                      root_module_types=PRODUCERS):
        root = names[group[0].dep.target.module]
        channels = len(group[0].idxs)
        result = ChannelGroup(root, channels)
        for item in group:
            module = item.dep.target.module
            if module not in names:
                continue  # an operator node (add, relu) with no parameters
            if not graph.is_out_channel_pruning_fn(item.dep.handler):  # (a BN's is both)
                if graph.is_in_channel_pruning_fn(item.dep.handler) \
                        and isinstance(module, PRODUCERS) and getattr(module, "groups", 1) == 1:
                    result.inputs.append(InputSide(names[module],
                                                   torch.as_tensor(list(item.idxs)),
                                                   torch.as_tensor(list(item.root_idxs))))
                continue
            name = names[module]
            if any(m.name == name for m in result.members):
                continue
            result.members.append(OutputSide(name, _gather(name, item, channels),
                                             isinstance(module, PRODUCERS)))
        if any(m.producer and m.name in root_set for m in result.members):
            groups.append(result)
    return groups


def _gather(name: str, item, channels: int) -> torch.Tensor:
    own = torch.as_tensor(list(item.idxs))
    root = torch.as_tensor(list(item.root_idxs))
    if len(own) != channels or sorted(own.tolist()) != list(range(channels)):
        raise PdpruneError(f"granularity=channel: {name} shares only part of its output channels "
                           "with a coupled group; exclude it (method.targets.exclude)")
    gather = torch.empty(channels, dtype=torch.long)
    gather[own] = root
    return gather


@torch.no_grad()
def remove_channels(model: nn.Module, example: torch.Tensor,
                    pruned: dict[str, torch.Tensor]) -> nn.Module:
    """Physically remove channels, in place: {root layer name: root channel indices to drop}.

    Torch-Pruning slices every coupled parameter (and the next layers' inputs); the model stays
    an ordinary nn.Module of smaller layers. Transformer heads and FFN neurons are removed by
    heads.py (their groups come from there too).
    """
    from .heads import remove_units  # (heads.py builds on this module)

    rest = remove_units(model, pruned)
    if len(rest) < len(pruned) and not rest:
        return model  # all were heads / neurons: no graph to trace
    pruned = rest
    modules = dict(model.named_modules())
    was_training = model.training
    graph = _dependency_graph(model.eval(), example)
    for root, idxs in pruned.items():
        if len(idxs) == 0:
            continue
        module = modules[root]
        fn = graph.get_pruner_of_module(module).prune_out_channels
        group = graph.get_pruning_group(module, fn, idxs=idxs.tolist())
        group.prune()
    return model.train(was_training)
