"""The early pruning indicator watching a channel pruner's coupled groups (schedule=epi).

During each dense epoch the chosen criterion is accumulated over the training steps (gradient
criteria) or read at the epoch's end (weight / BN-scale criteria). At the epoch's end the
channels of all groups are ranked together and the kept count per group at the target is the
sub-network N_t. A group's channel score is the mean over its members of the scored type (the
BNs for bn_* criteria, the convs / linears otherwise): (choice) a sum would favour the channels
of a residual stage, which a dozen BNs share, over a block's inner channels, which one BN has.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .channel_groups import ChannelGroup
from .epi import EarlyPruningIndicator
from .importance import ImportanceMeter, scored_type
from .schedules import EPISchedule
from .selection import global_budget


class EPIWatch:
    def __init__(self, groups: list[ChannelGroup], modules: dict[str, nn.Module],
                 schedule: EPISchedule):
        self.groups, self.schedule = groups, schedule
        types = scored_type(schedule.criterion)
        self.members = [[(m.name, m.gather) for m in g.members
                         if isinstance(modules[m.name], types)] for g in groups]
        for group, members in zip(groups, self.members, strict=True):
            if not members:
                raise ConfigError("schedule.criterion", schedule.criterion,
                                  f"the channel group of {group.root} has no layer it can score")
        self.meter = ImportanceMeter({name: modules[name] for members in self.members
                                      for name, _ in members}, schedule.criterion)
        self.indicator = EarlyPruningIndicator(schedule.tau, schedule.window, schedule.patience)

    @property
    def watching(self) -> bool:
        return self.schedule.prune_epoch is None

    def after_backward(self) -> None:
        if self.watching:
            self.meter.update()

    def group_scores(self) -> list[torch.Tensor]:
        scores = self.meter.scores()
        result = []
        for group, members in zip(self.groups, self.members, strict=True):
            total = torch.zeros(group.channels)
            for name, gather in members:
                total.index_add_(0, gather.cpu(), scores[name].detach().float().cpu())
            result.append(total / len(members))
        return result

    def subnet(self) -> list[int]:
        """N_t: kept channels per group when the target fraction of all channels is pruned."""
        pruned = global_budget(self.group_scores(), self.schedule.target)
        return [g.channels - p for g, p in zip(self.groups, pruned, strict=True)]

    def end_epoch(self, epochs_done: int) -> dict:
        """Observe N_t; decide whether to prune from the next step. Returns metrics to log."""
        if not self.watching:
            return {}
        subnet = self.subnet()
        value = self.indicator.observe(subnet)
        self.meter.reset()
        record = {"epi": value}
        fired = self.indicator.fires()
        if fired or epochs_done >= self.schedule.max_epoch:
            self.schedule.prune_epoch = epochs_done
            self.schedule.fallback = not fired
            record["epi_prune"] = "indicator" if fired else "fallback (max_epoch)"
        return record

    def planned_pruned(self) -> list[int]:
        """Channels to prune per group: the last sub-network's."""
        subnet = self.indicator.subnets[-1]
        return [g.channels - kept for g, kept in zip(self.groups, subnet, strict=True)]

    def summary(self) -> dict:
        return {"criterion": self.schedule.criterion, "tau": self.schedule.tau,
                "window": self.schedule.window, "patience": self.schedule.patience,
                "max_epoch": self.schedule.max_epoch,
                "trigger_epoch": self.schedule.prune_epoch,
                "trigger": None if self.schedule.prune_epoch is None
                else "fallback" if self.schedule.fallback else "indicator",
                "values": list(self.indicator.values)}

    def state_dict(self) -> dict:
        return {"indicator": self.indicator.state_dict(),
                "prune_epoch": self.schedule.prune_epoch, "fallback": self.schedule.fallback,
                "meter": {"sums": dict(self.meter.sums), "batches": self.meter.batches}}

    def load_state_dict(self, state: dict) -> None:
        self.indicator.load_state_dict(state["indicator"])
        self.schedule.prune_epoch = state["prune_epoch"]
        self.schedule.fallback = state["fallback"]
        self.meter.sums, self.meter.batches = dict(state["meter"]["sums"]), \
            state["meter"]["batches"]
