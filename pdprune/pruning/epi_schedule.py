"""schedule=epi: dense until the early pruning indicator fires (epi.py), then the target, from
the next step (docs/methods.md#epi). A schedule with its own state: it watches the channel
groups of a channel structure, and plans how many channels each group loses.

During each dense epoch the chosen criterion is accumulated over the training steps (gradient
criteria) or read at the epoch's end (weight / BN-scale criteria). At the epoch's end the
channels of all groups are ranked together and the kept count per group at the target is the
sub-network N_t. A group's channel score is the mean over its members of the scored type (the
BNs for bn_* criteria, the convs / linears otherwise): (choice) a sum would favour the channels
of a residual stage, which a dozen BNs share, over a block's inner channels, which one BN has.

Two choices shape the cut (docs/methods.md#epi): `normalize` ("mean": each group's scores over
their mean, so that groups of different weight scales compare; "none") and `cut` ("macs": the
fewest channels whose removal brings the network to the MACs of pruning the target fraction of
every group, so EPI trains a network that costs what a fixed-epoch run's costs; "channels": the
target fraction of all channels).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .epi import EarlyPruningIndicator
from .importance import ImportanceMeter, scored_type
from .selection import global_budget, round_kept
from .triggered import PruneOnceWhenTriggered


class EPISchedule(PruneOnceWhenTriggered):
    def __init__(self, target: float, steps_per_epoch: int, criterion: str, tau: float,
                 window: int, patience: int, max_epoch: int, normalize: str = "mean",
                 cut: str = "macs"):
        self.target, self.steps_per_epoch, self.criterion = target, steps_per_epoch, criterion
        self.normalize, self.cut = normalize, cut
        self.tau, self.window, self.patience, self.max_epoch = tau, window, patience, max_epoch
        self.indicator = EarlyPruningIndicator(tau, window, patience)
        self.prune_epoch: int | None = None  # epochs completed when it fired
        self.fallback = False  # pruned at max_epoch because the indicator had not fired
        self.planned: list[int] | None = None  # pruned channels per group, fixed when it fires
        self.structure = None

    def watch(self, structure) -> EPISchedule:
        """Score the coupled groups of `structure` (a channel structure) after every epoch."""
        self.structure = structure
        types = scored_type(self.criterion)
        self.members = [[(m.name, m.gather) for m in g.members
                         if isinstance(structure.modules[m.name], types)]
                        for g in structure.groups]
        for group, members in zip(structure.groups, self.members, strict=True):
            if not members:
                raise ConfigError("schedule.criterion", self.criterion,
                                  f"the channel group of {group.root} has no layer it can score")
        self.meter = ImportanceMeter({name: structure.modules[name] for members in self.members
                                      for name, _ in members}, self.criterion)
        self.plan_cost(structure)
        return self

    # --- the schedule
    @property
    def watching(self) -> bool:
        return self.prune_epoch is None

    # --- what it observes
    def after_backward(self) -> None:
        if self.watching:
            self.meter.update()

    def end_epoch(self, epochs_done: int) -> dict:
        """Observe N_t; decide whether to prune from the next step. Returns metrics to log."""
        if not self.watching:
            return {}
        value = self.indicator.observe(self.subnet())
        self.meter.reset()
        record = {"epi": value}
        fired = self.indicator.fires()
        if fired or epochs_done >= self.max_epoch:
            self.prune_epoch, self.fallback = epochs_done, not fired
            record["epi_prune"] = "indicator" if fired else "fallback (max_epoch)"
            self.planned = round_kept(self.structure.sizes(), self.planned_pruned(),
                                      self.structure.round_to)
        return record

    def group_scores(self) -> list[torch.Tensor]:
        scores = self.meter.scores()
        result = []
        for group, members in zip(self.structure.groups, self.members, strict=True):
            total = torch.zeros(group.channels)
            for name, gather in members:
                total.index_add_(0, gather.cpu(), scores[name].detach().float().cpu())
            total /= len(members)
            if self.normalize == "mean" and total.mean() > 0:
                total /= total.mean()
            result.append(total)
        return result

    def subnet(self) -> list[int]:
        """N_t: kept channels per group when the channels are cut at the target (by cost or
        by count; see the module's docstring)."""
        scores = self.group_scores()
        pruned = self.cost.cut_at_cost(scores, self.macs_budget) if self.cut == "macs" \
            else global_budget(scores, self.target)
        return [g.channels - p for g, p in zip(self.structure.groups, pruned, strict=True)]

    def planned_pruned(self) -> list[int]:
        """Channels to prune per group: the last sub-network's."""
        subnet = self.indicator.subnets[-1]
        return [g.channels - kept for g, kept in zip(self.structure.groups, subnet, strict=True)]

    def summary(self) -> dict:
        return {"epi": {
            "criterion": self.criterion, "normalize": self.normalize, "cut": self.cut,
            "tau": self.tau, "window": self.window,
            "patience": self.patience, "max_epoch": self.max_epoch,
            "trigger_epoch": self.prune_epoch,
            "trigger": None if self.prune_epoch is None
            else "fallback" if self.fallback else "indicator",
            "values": list(self.indicator.values)}}

    def state_dict(self) -> dict:
        return {"indicator": self.indicator.state_dict(), "prune_epoch": self.prune_epoch,
                "fallback": self.fallback, "planned": self.planned,
                "meter": {"sums": dict(self.meter.sums), "batches": self.meter.batches}}

    def load_state_dict(self, state: dict) -> None:
        self.indicator.load_state_dict(state["indicator"])
        self.prune_epoch, self.fallback = state["prune_epoch"], state["fallback"]
        self.planned = state["planned"]
        self.meter.sums = dict(state["meter"]["sums"])
        self.meter.batches = state["meter"]["batches"]
