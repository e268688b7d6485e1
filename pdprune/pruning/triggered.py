"""What the schedules that prune once, when an indicator fires (EPI, Early-Bird), share: dense
until `prune_epoch` epochs are done, the target from the next step on; and, for `cut=macs`, the
MACs budget of pruning every group by the target."""

from __future__ import annotations

from .channel_cost import ChannelCost


class PruneOnceWhenTriggered:
    target: float
    steps_per_epoch: int
    prune_epoch: int | None  # epochs completed when it fired (None: not yet)
    cut: str

    def sparsity_at(self, step: int) -> float:
        if self.prune_epoch is None or step < self.prune_epoch * self.steps_per_epoch:
            return 0.0
        return self.target

    def due(self, step: int) -> bool:
        return self.sparsity_at(step) > 0

    def plan_cost(self, structure) -> None:
        """cut=macs: the fewest channels whose removal brings the network to the MACs of
        pruning the target fraction of every group (channel_cost.py)."""
        if self.cut == "macs":
            self.cost = ChannelCost(structure)
            self.macs_budget = self.cost.uniform_macs(self.target)
