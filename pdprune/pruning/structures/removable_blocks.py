"""LayerPrune's structure: removable blocks (blocks.py), decided once and removed physically
from the live model (docs/methods.md#layerprune).

At the start of the schedule's epoch (`schedule=oneshot`, `schedule.epoch`; 0 prunes a model
loaded with model.checkpoint before any training) every removable block gets the mean of its
filters' criterion, computed over one pass of training data for gradient criteria (no weight
changes). The blocks to go are chosen by the budget: the `layers_to_remove` least important in
one shot, or the least important one by one until the measured latency falls to a fraction of
the unpruned model's (budgets.WithinLatency). Training then goes on: the fine-tuning.

`sparsity` here counts blocks: the fraction of removable blocks removed. There are no masks:
the decision is the removal, made before an epoch, while the training loader is idle.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator

import torch
from torch import nn

from ...distributed import from_main
from ...errors import ConfigError
from ...measure.results import LayerResult
from ...models.blocks import Block, count_blocks, find_blocks, remove_blocks
from ..importance import ImportanceMeter, accumulate, scored_type
from ..limits import check_blocks
from .base import ExportPlan, Structure

log = logging.getLogger("pdprune")


def block_scores(model: nn.Module, blocks: list[Block],
                 filter_scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """A block's importance: the mean of its filters' scores (`filter_scores` maps module names
    to per-output-channel scores; every scored module inside the block counts)."""
    result = {}
    for block in blocks:
        inside = [s for name, s in filter_scores.items() if block.contains(name)]
        if not inside:
            raise ValueError(f"{block.name}: no scored layer inside the block")
        result[block.name] = float(torch.cat([s.flatten().cpu() for s in inside]).mean())
    return result


def scored_modules(model: nn.Module, blocks: list[Block], criterion: str) -> dict[str, nn.Module]:
    """The modules inside removable blocks that `criterion` scores."""
    types = scored_type(criterion)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, types) and any(block.contains(name) for block in blocks)}


class BlockImportance:
    """The scorer of blocks: the mean of a filter criterion over each block's filters."""

    def __init__(self, criterion: str, train_batches: Callable[[], Generator] | None,
                 importance_batches: int | None):
        self.criterion, self.train_batches = criterion, train_batches
        self.importance_batches = importance_batches

    def __call__(self, model: nn.Module, blocks: list[Block]) -> dict[str, float]:
        meter = ImportanceMeter(scored_modules(model, blocks, self.criterion), self.criterion)
        if meter.needs_gradients:
            if self.train_batches is None:
                raise ConfigError("method.criterion", self.criterion, "needs training data")
            batches = self.train_batches()
            try:
                accumulate(meter, model, itertools.islice(batches, self.importance_batches),
                           next(model.parameters()).device)
            finally:
                batches.close()  # gives the training loader its state back
        return block_scores(model, blocks, meter.scores())


class BlockStructure(Structure):
    """No masks: the decision is the removal."""

    unit = "blocks"

    def __init__(self, model: nn.Module, scorer: BlockImportance, choose):
        self.model, self.scorer, self.choose = model, scorer, choose
        self.blocks: list[Block] = find_blocks(model)
        check_blocks(len(self.blocks), getattr(choose, "count", None), type(model).__name__)
        self.params = {b.name: sum(p.numel() for p in model.get_submodule(b.name).parameters())
                       for b in self.blocks}
        self.blocks_before = count_blocks(model)
        self.scores: dict[str, float] = {}
        self.removed: list[str] | None = None  # None: not pruned yet

    # --- units
    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def num_prunable(self) -> int:
        return sum(self.params.values())

    # --- sparsity as the summary counts it: a fraction of the removable blocks
    def final_sparsity(self, target: float) -> float:
        count = getattr(self.choose, "count", None)
        return self.achieved() if count is None else count / len(self.blocks)

    def fraction(self, counts: list[int]) -> float:
        return 0.0 if self.removed is None else self.final_sparsity(0.0)

    def achieved(self) -> float:
        return len(self.removed or []) / len(self.blocks)

    # --- the decision
    def begin_epoch(self, epoch: int, pruning) -> list[nn.Parameter]:
        """Before the first batch of `epoch` (the training loader is idle here)."""
        if self.removed is None and pruning.schedule.due(epoch * pruning.steps_per_epoch):
            return self.prune()
        return []

    def prune(self) -> list[nn.Parameter]:
        """Score, choose and remove blocks; returns the parameters whose shape changed."""
        self.scores = self.scorer(self.model, self.blocks)
        order = sorted(self.scores, key=lambda name: self.scores[name])  # stable: model order
        chosen = from_main(self.choose(self.model, order))  # one decision for all ranks
        reshaped = remove_blocks(self.model, chosen)
        self.removed = chosen
        log.info("layerprune: removed %d of %d removable blocks (%s): %s", len(chosen),
                 len(self.blocks), self.scorer.criterion, ", ".join(chosen) or "none")
        return reshaped

    @torch.no_grad()
    def finalize(self, counts: list[int]) -> list[LayerResult]:
        """Per removable block: its parameters, and whether they went."""
        if self.removed is None:
            self.prune()  # the schedule's epoch lay beyond the run
        gone = set(self.removed)
        return [LayerResult(b.name, (self.params[b.name],), self.params[b.name],
                            self.params[b.name] if b.name in gone else 0,
                            self.params[b.name] if b.name in gone else 0, 0)
                for b in self.blocks]

    def export_plan(self) -> ExportPlan:
        return ExportPlan(reason="the blocks are gone from the model already", shallower=True)

    def summary(self, counts: list[int], target: float) -> dict:
        return {"blocks": {
            "criterion": self.scorer.criterion, "removable": len(self.blocks),
            "removed": list(self.removed or []), "blocks_before": self.blocks_before,
            "blocks_after": count_blocks(self.model),
            "scores": {name: self.scores[name] for name in self.names if name in self.scores},
            **self.choose.summary()}}

    def state_dict(self) -> dict:
        return {"removed": self.removed, "scores": dict(self.scores),
                "choose": self.choose.state_dict()}

    def load_state_dict(self, state: dict, counts: list[int],
                        optimizer: torch.optim.Optimizer | None = None) -> None:
        """Restores the architecture too: call before loading the model's weights."""
        self.scores = dict(state["scores"])
        self.choose.load_state_dict(state["choose"])
        if state["removed"] is not None and self.removed is None:
            remove_blocks(self.model, state["removed"])
        self.removed = state["removed"]
