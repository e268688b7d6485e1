"""LayerPrune (METHODS.md section 3): remove whole blocks, once, by filter-derived importance.

At the start of the schedule's epoch (`schedule=oneshot`, `schedule.epoch`; 0 prunes a model
loaded with model.checkpoint before any training) every removable block gets the mean of its
filters' criterion, computed over one pass of training data for gradient criteria (no weight
changes). The `layers_to_remove` least important blocks go in one shot; or, with a
`latency_budget`, the least important blocks go one by one until the measured latency on the
training device is at most that fraction of the unpruned model's. Training then goes on: the
fine-tuning.

`sparsity` here counts blocks: the fraction of removable blocks removed.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Generator

import torch
from torch import nn

from ..distributed import from_main
from ..errors import ConfigError
from ..export.latency import compare_latency
from .blocks import Block, block_scores, count_blocks, find_blocks, remove_blocks, scored_modules
from .budgets import check_blocks
from .importance import ImportanceMeter, accumulate
from .pruner import LayerResult, LoopHooks
from .schedules import OneShotSchedule

log = logging.getLogger("pdprune")


class LayerPruner(LoopHooks):
    """Same interface as Pruner; its unit is a block."""

    left_dense: list[str] = []

    def __init__(self, model: nn.Module, schedule: OneShotSchedule, criterion: str, *,
                 layers_to_remove: int | None, latency_budget: float | None,
                 latency_batch: int, input_shape: tuple[int, ...],
                 train_batches: Callable[[], Generator] | None, importance_batches: int | None):
        self.model, self.schedule, self.criterion = model, schedule, criterion
        self.layers_to_remove, self.latency_budget = layers_to_remove, latency_budget
        self.latency_batch, self.input_shape = latency_batch, input_shape
        self.train_batches, self.importance_batches = train_batches, importance_batches
        self.blocks: list[Block] = find_blocks(model)
        check_blocks(len(self.blocks), layers_to_remove, type(model).__name__)
        self.params = {b.name: sum(p.numel() for p in model.get_submodule(b.name).parameters())
                       for b in self.blocks}
        self.blocks_before = count_blocks(model)
        self.scores: dict[str, float] = {}
        self.removed: list[str] | None = None  # None: not pruned yet
        self.latency_trace: list[dict] = []

    # --- what the summary and the loop read
    @property
    def layers(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def num_prunable(self) -> int:
        return sum(self.params.values())

    @property
    def final_sparsity(self) -> float:
        if self.layers_to_remove is not None:
            return self.layers_to_remove / len(self.blocks)
        return self.achieved_sparsity()  # a latency budget decides the count when it prunes

    @property
    def target_sparsity(self) -> float:
        return 0.0 if self.removed is None else self.final_sparsity

    def achieved_sparsity(self) -> float:
        return len(self.removed or []) / len(self.blocks)

    # --- the loop's calls
    def attach(self) -> LayerPruner:
        return self

    def before_step(self, step: int) -> None:
        pass

    def begin_epoch(self, epoch: int) -> list[nn.Parameter]:
        """Before the first batch of `epoch` (0-based): the training loader is idle here."""
        if self.removed is None and epoch >= self.schedule.epoch:
            return self.prune()
        return []

    def prune(self) -> list[nn.Parameter]:
        """Score, choose and remove blocks; returns the parameters whose shape changed."""
        self.scores = self._block_scores()
        order = sorted(self.scores, key=lambda name: self.scores[name])  # stable: model order
        if self.layers_to_remove is not None:
            chosen = order[:self.layers_to_remove]
        else:
            chosen = self._within_latency_budget(order)
        chosen = from_main(chosen)  # one decision for all ranks (timings differ per process)
        reshaped = remove_blocks(self.model, chosen)
        self.removed = chosen
        log.info("layerprune: removed %d of %d removable blocks (%s): %s", len(chosen),
                 len(self.blocks), self.criterion, ", ".join(chosen) or "none")
        return reshaped

    def _block_scores(self) -> dict[str, float]:
        meter = ImportanceMeter(scored_modules(self.model, self.blocks, self.criterion),
                                self.criterion)
        if meter.needs_gradients:
            if self.train_batches is None:
                raise ConfigError("method.criterion", self.criterion, "needs training data")
            batches = self.train_batches()
            try:
                accumulate(meter, self.model, itertools.islice(batches, self.importance_batches),
                           next(self.model.parameters()).device)
            finally:
                batches.close()  # gives the training loader its state back
        return block_scores(self.model, self.blocks, meter.scores())

    def _within_latency_budget(self, order: list[str]) -> list[str]:
        """Remove blocks in `order` until latency <= budget x the unpruned model's."""
        device = next(self.model.parameters()).device
        dense, candidate = copy.deepcopy(self.model), copy.deepcopy(self.model)
        chosen: list[str] = []
        for name in order[:-1]:  # at least one block stays
            remove_blocks(candidate, [name])
            chosen.append(name)
            timing = compare_latency({"dense": dense, "pruned": candidate}, self.input_shape,
                                     self.latency_batch, device)
            ratio = timing["pruned"]["median_ms"] / timing["dense"]["median_ms"]
            self.latency_trace.append({"removed": len(chosen), "block": name, "ratio": ratio,
                                       "median_ms": timing["pruned"]["median_ms"]})
            if ratio <= self.latency_budget:
                return chosen
        return chosen

    # --- the end
    @torch.no_grad()
    def finalize(self) -> list[LayerResult]:
        """Per removable block: its parameters, and whether they went."""
        if self.removed is None:
            self.prune()  # the schedule's epoch lay beyond the run
        gone = set(self.removed)
        return [LayerResult(b.name, (self.params[b.name],), self.params[b.name],
                            self.params[b.name] if b.name in gone else 0,
                            self.params[b.name] if b.name in gone else 0, 0)
                for b in self.blocks]

    def layer_summary(self) -> dict:
        return {"criterion": self.criterion, "removable": len(self.blocks),
                "removed": list(self.removed or []), "blocks_before": self.blocks_before,
                "blocks_after": count_blocks(self.model),
                "scores": {name: self.scores[name] for name in self.layers if name in self.scores},
                **({"latency_budget": self.latency_budget, "latency_trace": self.latency_trace}
                   if self.latency_budget is not None else {})}

    def state_dict(self) -> dict:
        return {"removed": self.removed, "scores": dict(self.scores),
                "latency_trace": list(self.latency_trace)}

    def load_state_dict(self, state: dict) -> None:
        """Restores the architecture too: call before loading the model's weights."""
        self.scores, self.latency_trace = dict(state["scores"]), list(state["latency_trace"])
        if state["removed"] is not None and self.removed is None:
            remove_blocks(self.model, state["removed"])
        self.removed = state["removed"]
