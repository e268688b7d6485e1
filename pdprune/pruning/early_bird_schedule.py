"""schedule=early_bird: dense until the Early-Bird ticket is drawn (early_bird.py), then the
ticket, from the next step (docs/methods.md#early-bird). A schedule with its own state, on the
machinery of EPI's (epi_schedule.py): it watches the channel groups of a channel structure and
plans how many channels each group loses; unlike EPI it also fixes WHICH channels (the ticket),
which TicketScorer hands to the binary masks.

After each dense epoch the mask at the target is drawn from the BN scales: a group channel
scores the mean |gamma| over the group's BatchNorms (as EPI's bn_gamma criterion scores it;
with one BN per group, as in the paper's VGG, exactly that BN's |gamma|), and ONE cut over all
groups' channels (`cut`: the target fraction of all channels, the paper's global percentile;
or EPI's cut at the MACs of pruning every group by the target) gives the pruned count per
group, settled to the structure's rules (every group keeps a channel, counts in blocks of
granularity.round_to). Each group loses its lowest-scoring channels. The mask so drawn is
the one applied when it fires: the channels removed are exactly the ticket's.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .early_bird import EarlyBirdQueue, Mask
from .importance import BATCH_NORMS, static_scores
from .selection import global_budget, keep_largest
from .triggered import PruneOnceWhenTriggered


def bn_members(structure) -> list[list[tuple[str, torch.Tensor]]]:
    """Per coupled group, (name, gather) of its BatchNorms; a ConfigError naming `schedule`
    where a group has none (Early-Bird ranks channels by BN scales)."""
    check_bn_groups(structure.groups, structure.modules)
    return [[(m.name, m.gather) for m in g.members
             if isinstance(structure.modules[m.name], BATCH_NORMS)] for g in structure.groups]


def check_bn_groups(groups, modules) -> None:
    for group in groups:
        if not any(isinstance(modules[m.name], BATCH_NORMS) for m in group.members):
            raise ConfigError("schedule", "early_bird", f"ranks channels by BatchNorm scales, "
                              f"but the channel group of {group.root} has no BatchNorm (use a "
                              "model with BN, e.g. model=resnet20, or schedule=epi)")


class EarlyBirdSchedule(PruneOnceWhenTriggered):
    def __init__(self, target: float, steps_per_epoch: int, epsilon: float, window: int,
                 pairs: str, max_epoch: int, cut: str = "channels", l1: float = 1e-4,
                 l1_when_pruned: bool = False):
        self.target, self.steps_per_epoch, self.cut = target, steps_per_epoch, cut
        self.epsilon, self.window, self.pairs, self.max_epoch = epsilon, window, pairs, max_epoch
        self.l1, self.l1_when_pruned = l1, l1_when_pruned  # read by the BN L1 rule (bn_l1.py)
        self.queue = EarlyBirdQueue(epsilon, window, pairs)
        self.prune_epoch: int | None = None  # epochs completed when it fired
        self.fallback = False  # pruned at max_epoch because the distance had not settled
        self.ticket: Mask | None = None  # the mask applied, fixed when it fires
        self.planned: list[int] | None = None  # pruned channels per group, fixed when it fires
        self.structure = None

    def watch(self, structure) -> EarlyBirdSchedule:
        """Draw the mask of `structure`'s coupled groups after every epoch."""
        self.structure = structure
        self.members = bn_members(structure)
        self.plan_cost(structure)
        return self

    # --- the schedule
    @property
    def watching(self) -> bool:
        return self.structure is not None and self.prune_epoch is None

    def after_backward(self) -> None:
        pass  # the BN scales are read at the epoch's end; the L1 term is a rule (bn_l1.py)

    def end_epoch(self, epochs_done: int) -> dict:
        """Draw m_t; decide whether to prune from the next step. Returns metrics to log."""
        if not self.watching:
            return {}
        mask = self.mask_at_target()
        record = {"eb_distance": self.queue.observe(mask)}
        fired = self.queue.fires()
        if fired or epochs_done >= self.max_epoch:
            self.prune_epoch, self.fallback = epochs_done, not fired
            record["eb_prune"] = "distance" if fired else "fallback (max_epoch)"
            self.ticket = [k.clone() for k in mask]
            self.planned = [int((~k).sum()) for k in mask]
        return record

    # --- the mask at the target
    def group_scores(self) -> list[torch.Tensor]:
        """Per group channel: the mean |gamma| over the group's BatchNorms."""
        result = []
        for group, members in zip(self.structure.groups, self.members, strict=True):
            total = torch.zeros(group.channels)
            for name, gather in members:
                gamma = static_scores(self.structure.modules[name], "bn_gamma")
                total.index_add_(0, gather.cpu(), gamma.cpu())
            result.append(total / len(members))
        return result

    def mask_at_target(self) -> Mask:
        """m_t: per group, True for the channels kept when one cut over all groups prunes the
        target (by count or by cost) and each group loses its lowest scores."""
        scores = self.group_scores()
        pruned = self.cost.cut_at_cost(scores, self.macs_budget) if self.cut == "macs" \
            else global_budget(scores, self.target)
        pruned = self.structure.settle(pruned, self.target)
        return [keep_largest(s.reshape(1, -1), p)[0] for s, p in zip(scores, pruned,
                                                                     strict=True)]

    def summary(self) -> dict:
        return {"early_bird": {
            "l1": self.l1, "l1_when_pruned": self.l1_when_pruned, "cut": self.cut,
            "epsilon": self.epsilon, "window": self.window, "pairs": self.pairs,
            "max_epoch": self.max_epoch, "trigger_epoch": self.prune_epoch,
            "trigger": None if self.prune_epoch is None
            else "fallback" if self.fallback else "distance",
            "distances": list(self.queue.distances)}}

    def state_dict(self) -> dict:
        return {"queue": self.queue.state_dict(), "prune_epoch": self.prune_epoch,
                "fallback": self.fallback, "planned": self.planned,
                "ticket": None if self.ticket is None else [k.clone() for k in self.ticket]}

    def load_state_dict(self, state: dict) -> None:
        self.queue.load_state_dict(state["queue"])
        self.prune_epoch, self.fallback = state["prune_epoch"], state["fallback"]
        self.planned = state["planned"]
        self.ticket = None if state["ticket"] is None else [k.clone() for k in state["ticket"]]


class TicketScorer:
    """The method's scorer until the ticket is drawn; from then on the ticket itself (1 kept,
    0 pruned): a binary mask keeping the largest scores at the planned count keeps exactly the
    ticket's channels."""

    def __init__(self, schedule: EarlyBirdSchedule, inner):
        self.schedule, self.inner = schedule, inner

    def __call__(self, i: int) -> torch.Tensor:
        ticket = self.schedule.ticket
        return self.inner(i) if ticket is None else ticket[i].float()

    def state_dict(self) -> dict:
        return self.inner.state_dict()  # the ticket is the schedule's

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
