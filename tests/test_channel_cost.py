"""EPI's cut at a cost: the MACs of a channel sub-network, predicted without building it."""

from __future__ import annotations

import copy

import pytest
import torch

from pdprune.measure.cost import layer_macs
from pdprune.models import build_model
from pdprune.pruning.build import channel_groups
from pdprune.pruning.channel_cost import ChannelCost
from pdprune.pruning.structures.channels import ChannelStructure
from pdprune.pruning.structures.coupled import remove_channels
from pdprune.pruning.targets import select_targets

SHAPES = {"lenet": (1, 28, 28), "resnet20": (3, 16, 16), "mobilenet_v2": (3, 32, 32)}


@pytest.fixture
def structure_of(make_cfg):
    def build(name: str) -> ChannelStructure:
        return _structure(make_cfg(f"model={name}", "granularity=channel"), name)
    return build


def _structure(cfg, name: str) -> ChannelStructure:
    torch.manual_seed(0)
    shape = SHAPES[name]
    model = build_model(cfg.model, shape, 10)
    targets = select_targets(model, cfg.method.targets)
    groups, left_dense = channel_groups(model, targets, shape)
    return ChannelStructure(model, groups, left_dense, None, 1, shape)


def compacted_macs(structure: ChannelStructure, kept: list[int]) -> int:
    """The MACs of the network actually built by removing channels."""
    generator = torch.Generator().manual_seed(1)
    pruned = {g.root: torch.randperm(g.channels, generator=generator)[:g.channels - k]
              for g, k in zip(structure.groups, kept, strict=True)}
    model = copy.deepcopy(structure.model)
    example = torch.zeros((1, *structure.input_shape))
    remove_channels(model, example, pruned)
    return sum(dense for dense, _ in layer_macs(model, structure.input_shape,
                                                torch.device("cpu")).values())


@pytest.mark.parametrize("name", list(SHAPES))
def test_predicted_macs_are_those_of_the_compacted_network(structure_of, name):
    structure = structure_of(name)
    cost = ChannelCost(structure)
    sizes = [g.channels for g in structure.groups]
    assert cost.macs(sizes) == compacted_macs(structure, sizes)  # dense
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        kept = [int(torch.randint(1, n + 1, (1,), generator=generator)) for n in sizes]
        assert cost.macs(kept) == pytest.approx(compacted_macs(structure, kept), rel=1e-9)


def test_the_cut_at_cost_is_the_shortest_prefix_of_the_ranking_that_fits(structure_of):
    structure = structure_of("resnet20")
    cost = ChannelCost(structure)
    sizes = [g.channels for g in structure.groups]
    generator = torch.Generator().manual_seed(3)
    scores = [torch.rand(n, generator=generator) for n in sizes]
    budget = cost.uniform_macs(0.5)
    pruned = cost.cut_at_cost(scores, budget)
    kept = [n - p for n, p in zip(sizes, pruned, strict=True)]
    assert cost.macs(kept) <= budget and min(kept) >= 1
    # the channels that went are the lowest scored of all (each group's best excepted) ...
    flat = torch.cat(scores)
    gone = sum(pruned)
    threshold = flat.sort().values[gone - 1]
    for s, p in zip(scores, pruned, strict=True):
        assert int((s <= threshold).sum()) >= p
    # ... and one channel fewer would not fit: put back the highest-scored that went
    last_group = max(range(len(scores)),
                     key=lambda g: float(scores[g].sort().values[pruned[g] - 1]) if pruned[g]
                     else -1.0)
    kept[last_group] += 1
    assert cost.macs(kept) > budget


def test_uniform_macs_prunes_every_group_by_the_target(structure_of):
    structure = structure_of("resnet20")
    cost = ChannelCost(structure)
    kept = [n - round(0.5 * n) for n in (g.channels for g in structure.groups)]
    assert cost.uniform_macs(0.5) == cost.macs(kept)
    assert cost.uniform_macs(0.5) == pytest.approx(compacted_macs(structure, kept), rel=1e-9)
