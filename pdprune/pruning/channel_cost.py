"""What a channel sub-network costs, without building it: the MACs of the network that keeps
n_g channels of every coupled group g (EPI's cut at a cost, docs/methods.md#epi).

A conv / linear layer's MACs scale with the fraction of its output channels kept (the group it
produces) times the fraction of its input channels kept (the groups it reads): a layer's dense
MACs times both fractions is exactly what the compacted layer costs.
"""

from __future__ import annotations

import torch

from ..measure.cost import layer_macs
from .selection import global_total


class ChannelCost:
    def __init__(self, structure):
        groups = structure.groups
        device = next(structure.model.parameters()).device
        self.dense = {name: dense for name, (dense, _) in
                      layer_macs(structure.model, structure.input_shape, device).items()}
        self.sizes = [g.channels for g in groups]
        self.out_group = {m.name: i for i, g in enumerate(groups) for m in g.producers}
        # (group, input indices one of its channels feeds) for every layer reading a group
        self.reads: dict[str, list[tuple[int, float]]] = {}
        for i, g in enumerate(groups):
            for side in g.inputs:
                self.reads.setdefault(side.name, []).append((i, len(side.idxs) / g.channels))
        # readers are never grouped convs (coupled.InputSide), so in-features is weight dim 1
        self.in_features = {name: structure.modules[name].weight.shape[1] for name in self.reads}

    def macs(self, kept: list[int]) -> float:
        """MACs for one sample of the network keeping kept[g] channels of group g."""
        total = 0.0
        for name, dense in self.dense.items():
            out = self.out_group.get(name)
            fraction = 1.0 if out is None else kept[out] / self.sizes[out]
            if name in self.reads:
                lost = sum(per * (self.sizes[g] - kept[g]) for g, per in self.reads[name])
                fraction *= 1 - lost / self.in_features[name]
            total += dense * fraction
        return total

    def cut_at_cost(self, scores: list[torch.Tensor], budget: float) -> list[int]:
        """Pruned channels per group: the fewest lowest-scoring channels (one order over all
        groups, ties by position) whose removal brings the network's MACs to `budget` or
        below. Each group's best channel stays, so no group is emptied."""
        flat = torch.cat([s.reshape(-1).float() for s in scores])
        group_of = torch.repeat_interleave(torch.arange(len(scores)),
                                           torch.tensor([s.numel() for s in scores]))
        best = torch.zeros_like(flat, dtype=torch.bool)
        start = 0
        for s in scores:
            best[start + int(s.reshape(-1).float().argmax())] = True
            start += s.numel()
        order = torch.argsort(flat, stable=True)
        order = order[~best[order]]

        def pruned(k: int) -> list[int]:
            return torch.bincount(group_of[order[:k]], minlength=len(scores)).tolist()

        def fits(k: int) -> bool:
            return self.macs([n - p for n, p in zip(self.sizes, pruned(k), strict=True)]) \
                <= budget

        low, high = 0, len(order)  # MACs fall as k grows: the smallest k that fits
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if fits(mid) else (mid + 1, high)
        return pruned(low)

    def uniform_macs(self, target: float) -> float:
        """MACs of the network that prunes the fraction `target` of every group's channels."""
        return self.macs([n - global_total(n, target) for n in self.sizes])

