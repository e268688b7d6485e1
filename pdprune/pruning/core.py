"""The one driver: a structure, a scorer, a budget and a schedule, called by the train loop.

    structure  what a mask unit covers, its masks, how they bake or what it removes
               (structures/: weights, channels, blocks)
    scorer     the importance of every unit (scorers.py; importance.py for filter criteria)
    mask       binary or PDP's soft mask, chosen by the structure from `tau` (masks.py)
    budget     units to prune per group at a target (budgets.py)
    schedule   step -> target sparsity, pure or with its own state (schedules.py, EPI)
    rules      what a method does to training besides masking (rules.py): regrow pruned
               weights, add a penalty's gradient, freeze learned thresholds

Every method is a choice of these (build.py reads the config). The loop calls the driver at
named points (before each optimizer step, after each backward, at epoch starts and ends, at
the end); it never owns the loop. Its state plus the model's state_dict restore a run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..measure.results import LayerResult
from .rules import TrainingRule
from .structures.base import ExportPlan, Structure


class Pruner:
    def __init__(self, structure: Structure, scorer, budget, schedule, steps_per_epoch: int,
                 compact_when_final: bool = False, harden_at_target: bool = False,
                 rules: Sequence[TrainingRule] = ()):
        self.structure, self.scorer, self.budget = structure, scorer, budget
        self.rules = list(rules)
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch
        # remove units from the live model once their pruning is final (needs the optimizer)
        self.compact_when_final = compact_when_final
        self.harden_at_target = harden_at_target  # soft masks become binary at the target
        self.optimizer: torch.optim.Optimizer | None = None
        self.sparsity = 0.0  # the schedule's value the masks currently implement
        self.counts = [0] * len(structure.sizes())  # units pruned per row, per group
        self.step = 0  # the optimizer step under way (set by before_step)

    def attach(self) -> Pruner:
        self.structure.attach()
        return self

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer training the model: removed units take their state with them."""
        self.optimizer = optimizer

    # --- what the loop and the summary read
    @property
    def unit(self) -> str:
        """What sparsity counts: weights, channels or blocks."""
        return self.structure.unit

    @property
    def layer_names(self) -> list[str]:
        return self.structure.names

    @property
    def left_dense(self) -> list[str]:
        return self.structure.left_dense

    @property
    def num_prunable(self) -> int:
        return self.structure.num_prunable

    @property
    def final_sparsity(self) -> float:
        return self.structure.final_sparsity(self.schedule.target)

    @property
    def target_sparsity(self) -> float:
        """The fraction of units the current budget prunes."""
        return self.structure.fraction(self.counts)

    def achieved_sparsity(self) -> float:
        """The fraction of units the (hardened) masks prune right now."""
        return self.structure.achieved()

    def achieved_by_layer(self) -> dict[str, float]:
        return self.structure.achieved_by_layer()

    # --- the loop's calls
    def begin_epoch(self, epoch: int) -> bool:
        """Before the first batch of `epoch` (0-based), while the loader is idle: structures
        that remove units act here. Returns whether the model's parameters changed (wrappers
        such as DDP or torch.compile must be rebuilt)."""
        reshaped = self.structure.begin_epoch(epoch, self)
        for param in reshaped:  # state of the old shape
            if self.optimizer is not None:
                self.optimizer.state.pop(param, None)
        if not (self.compact_when_final and self.optimizer is not None
                and self.structure.shrinks_network):
            return bool(reshaped)
        self.before_step(epoch * self.steps_per_epoch)  # the masks the epoch starts with
        if self.harden_at_target and epoch > 0 and self.schedule.target > 0 \
                and self.schedule.sparsity_at((epoch - 1) * self.steps_per_epoch) \
                == self.schedule.target:  # an epoch of soft masks at the target is done
            self.structure.harden()  # final from now on: the next lines remove the pruned
        return self.structure.compact(self.optimizer) or bool(reshaped)

    def before_step(self, step: int) -> None:
        """Before optimizer step `step` (0-based count of steps already taken)."""
        self.step = step
        target = self.schedule.sparsity_at(step)
        if target != self.sparsity:
            self.set_sparsity(target)
        for rule in self.rules:
            rule.before_step(self, step)

    def after_backward(self) -> None:
        """After each backward, before gradient clipping and the optimizer step."""
        self.schedule.after_backward()
        for rule in self.rules:
            rule.after_backward(self, self.step)

    def end_epoch(self, epochs_done: int) -> dict:
        """After an epoch's last step; returns extra fields for its metrics record."""
        return self.schedule.end_epoch(epochs_done)

    def set_sparsity(self, sparsity: float) -> None:
        masks = self.structure.masks
        self.counts = self.budget.counts(sparsity, self.schedule.target, self.scorer)
        for i, (mask, count) in enumerate(zip(masks, self.counts, strict=True)):
            mask.set(count, self.scorer(i) if mask.needs_scores else None)
        self.sparsity = sparsity

    # --- the end
    def finalize(self) -> list[LayerResult]:
        """Harden at the final target, bake zeros (or remove what is still to go), drop the
        parametrizations and check every group against its budget."""
        if self.sparsity != self.schedule.target:
            self.set_sparsity(self.schedule.target)
        for rule in self.rules:
            rule.before_finalize(self)
        return self.structure.finalize(self.counts)

    def summary_sections(self) -> dict:
        """The summary's sections of this structure, schedule and rules (channels, blocks,
        epi, str)."""
        return {**self.structure.summary(self.counts, self.schedule.target),
                **self.schedule.summary(),
                **{key: value for rule in self.rules for key, value in rule.summary().items()}}

    def export_plan(self) -> ExportPlan:
        return self.structure.export_plan()

    # --- checkpoints
    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity, "counts": list(self.counts),
                "structure": self.structure.state_dict(),
                "budget": self.budget.state_dict(), "scorer": self.scorer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "rules": [rule.state_dict() for rule in self.rules]}

    def load_state_dict(self, state: dict) -> None:
        """Call before loading the model's weights (a layer-pruned model regains its shape)."""
        self.sparsity, self.counts = state["sparsity"], list(state["counts"])
        self.schedule.load_state_dict(state["schedule"])
        self.scorer.load_state_dict(state["scorer"])
        self.budget.load_state_dict(state["budget"])
        self.structure.load_state_dict(state["structure"], self.counts, self.optimizer)
        for rule, saved in zip(self.rules, state.get("rules", [{}] * len(self.rules)),
                               strict=True):
            rule.load_state_dict(saved)

