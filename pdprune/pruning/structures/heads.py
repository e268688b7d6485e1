"""Transformer channels: whole attention heads and FFN neurons (granularity=channel on the ViT
and the BERT-style text models). docs/methods.md#granularities.

An attention head is one channel of a "head group": its members are the q, k and v layers, each
contributing `head_dim` output rows per head (gather = row // head_dim), and its reader is the
output projection, whose input columns of the head go with it. An FFN neuron is an ordinary
channel of the first FFN linear, read by the second. The residual stream (the hidden size)
stays dense: it runs through every block, the embeddings and the norms.

The groups and their removal are found here from the module layout, not by Torch-Pruning's
traced graph: a traced ViT couples the whole residual stream, and heads need their head count
updated. Layouts known: models/vit.py (attn.q/k/v/proj, mlp.fc1/fc2) and Hugging Face BERT
encoders (attention.self.query/key/value, attention.output.dense, intermediate.dense,
output.dense), which cover bert_tiny, bert_mini, minilm and BERT-style hf folders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import PdpruneError
from ...models import vit
from .coupled import ChannelGroup, InputSide, OutputSide


@dataclass
class Site:
    """One prunable unit kind of one block: its heads or its FFN neurons."""

    kind: str  # "heads" | "neurons"
    owner: str  # the attention module (its head count changes) or the FFN's first linear
    producers: list[str]  # q, k, v / fc1: `width` output rows per unit
    readers: list[str]  # out-projection / fc2: `width` input columns per unit
    width: int  # head_dim, or 1

    @property
    def root(self) -> str:
        return self.producers[0]


def _child(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def find_sites(model: nn.Module) -> list[Site]:
    """The heads and FFN neurons of every block, in module order."""
    sites = []
    for name, module in model.named_modules():
        kids = dict(module.named_children())
        if isinstance(module, vit.Attention):
            sites.append(Site("heads", name, [_child(name, c) for c in "qkv"],
                              [_child(name, "proj")], module.head_dim))
        elif isinstance(module, vit.Mlp):
            sites.append(Site("neurons", _child(name, "fc1"), [_child(name, "fc1")],
                              [_child(name, "fc2")], 1))
        elif {"query", "key", "value"} <= kids.keys() and hasattr(module, "attention_head_size"):
            parent = name.rsplit(".", 1)[0]  # BertAttention: .self and .output.dense
            sites.append(Site("heads", name, [_child(name, c) for c in ("query", "key", "value")],
                              [_child(parent, "output.dense")], module.attention_head_size))
        elif {"attention", "intermediate", "output"} <= kids.keys() \
                and hasattr(kids["intermediate"], "dense"):  # BertLayer's FFN
            first = _child(name, "intermediate.dense")
            sites.append(Site("neurons", first, [first], [_child(name, "output.dense")], 1))
    return sites


def transformer_groups(model: nn.Module, sites: list[Site],
                       roots: list[str]) -> list[ChannelGroup]:
    """A channel group for every site whose producers are all pruning targets (`roots`)."""
    modules = dict(model.named_modules())
    groups = []
    for site in sites:
        if not set(site.producers) <= set(roots):
            continue
        rows = modules[site.root].weight.shape[0]
        channel_of_row = torch.arange(rows) // site.width
        group = ChannelGroup(site.root, rows // site.width, rows=site.width, kind=site.kind,
                             owner=site.owner)
        group.members = [OutputSide(name, channel_of_row.clone(), True)
                         for name in site.producers]
        group.inputs = [InputSide(name, torch.arange(rows), channel_of_row.clone())
                        for name in site.readers]
        groups.append(group)
    return groups


def _cut(module: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    """Replace parameter `name` by its slices `keep` along `dim` (a new Parameter, as
    Torch-Pruning makes: optimizers and masks are re-pointed by name)."""
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(old.data.index_select(dim, keep.to(old.device)).clone(),
                                       requires_grad=old.requires_grad))


@torch.no_grad()
def remove_units(model: nn.Module, pruned: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove, in place, the heads / neurons of `pruned` ({root: the root layer's output rows,
    whole heads}) whose root is a transformer site's; returns the other entries (for
    Torch-Pruning)."""
    modules = dict(model.named_modules())
    sites = {site.root: site for site in find_sites(model)}
    rest = {}
    for root, idxs in pruned.items():
        site = sites.get(root)
        if site is None:
            rest[root] = idxs
            continue
        if len(idxs) == 0:
            continue
        gone = torch.zeros(modules[root].weight.shape[0], dtype=torch.bool)
        gone[idxs.cpu()] = True
        per_head = gone.reshape(-1, site.width)
        if (per_head.any(1) != per_head.all(1)).any():
            raise PdpruneError(f"{root}: removing part of a head ({site.width} rows each)")
        keep = (~gone).nonzero().flatten()
        for name in site.producers:
            layer = modules[name]
            _cut(layer, "weight", keep, 0)
            if layer.bias is not None:
                _cut(layer, "bias", keep, 0)
            layer.out_features = len(keep)
        for name in site.readers:
            _cut(modules[name], "weight", keep, 1)
            modules[name].in_features = len(keep)
        if site.kind == "heads":
            _set_head_count(modules[site.owner], len(keep) // site.width, len(keep))
    return rest


def _set_head_count(attention: nn.Module, heads: int, width: int) -> None:
    """The attention module's own bookkeeping (the forwards reshape with -1 heads)."""
    for attr in ("num_heads", "num_attention_heads"):
        if hasattr(attention, attr):
            setattr(attention, attr, heads)
    if hasattr(attention, "all_head_size"):  # Hugging Face BERT
        attention.all_head_size = width


def heads_summary(groups: list[ChannelGroup], kept: dict[str, torch.Tensor]) -> dict | None:
    """Heads kept per attention layer (after finalize), or None without head groups."""
    layers = {g.owner: [int(kept[g.root].sum()), g.channels] for g in groups
              if g.kind == "heads"}
    if not layers:
        return None
    return {"kept": sum(k for k, _ in layers.values()),
            "total": sum(t for _, t in layers.values()), "per_layer": layers}
