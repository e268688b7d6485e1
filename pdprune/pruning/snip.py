"""SNIP (Lee, Ajanthan & Torr, ICLR 2019, "Single-shot Network Pruning based on Connection
Sensitivity"); docs/methods.md#snip.

Before the first optimizer step, with the network as initialised and no weight masked, every
weight j scores its connection sensitivity

    s_j = |g_j w_j| / sum_k |g_k w_k|,   g = dL/dw of the cross-entropy on training data

and one cut over all target layers keeps the largest; the masks stay fixed for the whole run
(binary masks, schedule=from_start: one shot before step 0). The denominator is one positive
number for all weights of all layers: dividing by it changes no rank, so the cut ranks |g w|.
`batches` > 1 (a choice; the paper uses one minibatch) takes g on the union of the first
`batches` minibatches: the mean of their mean losses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import mean_across_ranks
from ..errors import ConfigError, PdpruneError

GRANULARITIES = ("unstructured", "nm")  # single weights; channels would need a channel sum


def check_at_init(cfg) -> None:
    """The masks of SNIP / STR begin before the first step: schedule=from_start."""
    schedule = cfg.schedule
    if schedule.name != "oneshot":
        raise ConfigError("schedule", schedule.name, f"method={cfg.method.name} acts from the "
                          "first step: schedule=from_start (its default)")
    if schedule.epoch != 0:
        raise ConfigError("schedule.epoch", schedule.epoch, f"method={cfg.method.name} acts "
                          "from the first step: must be 0 (schedule=from_start)")


def check_config(cfg) -> None:
    """method=snip's keys, as one-line errors naming the key."""
    if cfg.method.batches < 1:
        raise ConfigError("method.batches", cfg.method.batches, "must be >= 1 (minibatches of "
                          "training data for the gradient)")
    if cfg.granularity.name not in GRANULARITIES:
        raise ConfigError("granularity", cfg.granularity.name, "method=snip scores single "
                          "weights: granularity=unstructured or nm")
    check_at_init(cfg)


def loss_gradients(model: nn.Module, params: list[torch.Tensor], batches: Iterable,
                   count: int) -> list[torch.Tensor]:
    """d/dparams of the cross-entropy, averaged over the first `count` batches (and over the
    ranks of a data-parallel run, each reading its own slice). No optimizer step; `.grad` is not
    touched; buffers (BatchNorm running statistics) are put back as they were, so the pass leaves
    the model exactly as it found it. The model runs in its current mode (a new model: training
    mode, batch statistics, as the paper's network is used when it is trained)."""
    device = params[0].device
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    totals = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    seen = 0
    try:
        for x, y in itertools.islice(batches, count):
            loss = F.cross_entropy(model(x.to(device)).float(), y.to(device))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for total, grad in zip(totals, grads, strict=True):
                if grad is not None:  # a layer the loss does not reach has no sensitivity
                    total.add_(grad.float())
            seen += 1
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a generator over the training loader gives the loader its state back
        with torch.no_grad():
            buffers = dict(model.named_buffers())
            for name, value in saved.items():
                buffers[name].copy_(value)
    if seen == 0:
        raise PdpruneError("method=snip: the training data gave no batch to score weights on")
    for total in totals:
        total.div_(seen)
        mean_across_ranks(total)
    return totals


class SaliencyScorer:
    """SNIP's scores: |g w| per unit, (rows, units) as the granularity views the weight (N:M:
    the most sensitive N of every M stay). Computed once, when built: build_pruner makes it
    before the masks are attached and before any step, i.e. on the network as initialised.
    A resumed run computes them again from the same initial network and data, but does not
    cut again: its masks come from the checkpoint (binary masks are buffers of the model)."""

    def __init__(self, structure, model: nn.Module,
                 train_batches: Callable[[], Iterable] | None, batches: int):
        if train_batches is None:
            raise ConfigError("train_batches", None, "method=snip scores weights by the "
                              "gradient of the training loss: give a function returning one "
                              "pass of (x, y) training batches")
        weights = [layer.original for layer in structure.layers]
        grads = loss_gradients(model, weights, train_batches(), batches) if weights else []
        self.scores = [structure.granularity.magnitudes(g * w.detach().float())
                       for g, w in zip(grads, weights, strict=True)]

    def __call__(self, i: int) -> torch.Tensor:
        return self.scores[i]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
