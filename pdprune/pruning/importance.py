"""Filter importance: one score per output channel of a layer, shared by layer pruning
(LayerPrune) and the early pruning indicator (EPI); docs/methods.md#importance-criteria.

Criteria, per output channel c:
- `l1`, `l2`: of the filter's weights W_c (conv / linear rows);
- `taylor`: (w * dL/dw)^2 summed over the filter, per batch;
- `bn_gamma`: |gamma_c| of the BatchNorm after the layer;
- `bn_taylor`: |gamma_c dL/dgamma_c + beta_c dL/dbeta_c|, per batch: the first-order Taylor
  estimate of switching off a gate placed after the BN (its gradient at gate = 1 is exactly
  that sum).

Gradient criteria are averaged over the batches seen (one pass of training data, or an epoch's
training steps); reading a gradient never changes a weight. (choice) Weight criteria are divided
by the filter's size (l1 -> mean |w|, l2 -> root-mean-square, taylor -> mean), so that layers of
different fan-in compare: LayerPrune's "normalise per layer where scales differ". BN criteria
are already per channel and compare as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from ..distributed import mean_across_ranks
from ..errors import PdpruneError

CRITERIA = ("l1", "l2", "taylor", "bn_gamma", "bn_taylor")
GRADIENT_CRITERIA = ("taylor", "bn_taylor")
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
FILTERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def scored_type(criterion: str) -> tuple[type, ...]:
    """The module types a criterion scores: BatchNorms for bn_*, else convs and linears."""
    return BATCH_NORMS if criterion.startswith("bn_") else FILTERS


def _param(module: nn.Module, name: str) -> torch.Tensor:
    """A parameter before any mask parametrization: the weight the optimizer holds."""
    if parametrize.is_parametrized(module, name):
        return getattr(module.parametrizations, name).original
    return getattr(module, name)


@torch.no_grad()
def static_scores(module: nn.Module, criterion: str) -> torch.Tensor:
    """Per output channel, for the criteria that need no gradient."""
    if criterion == "bn_gamma":
        return _param(module, "weight").detach().abs().float()
    rows = _param(module, "weight").detach().float().flatten(1)
    if criterion == "l1":
        return rows.abs().mean(1)
    if criterion == "l2":
        return rows.square().mean(1).sqrt()
    raise ValueError(f"{criterion} is a gradient criterion (ImportanceMeter)")


@torch.no_grad()
def gradient_scores(module: nn.Module, criterion: str) -> torch.Tensor | None:
    """Per output channel, from the gradients of the last backward; None without gradients."""
    if criterion == "taylor":
        weight = _param(module, "weight")
        if weight.grad is None:
            return None
        return (weight.detach() * weight.grad).float().flatten(1).square().mean(1)
    gamma, beta = _param(module, "weight"), _param(module, "bias")
    if gamma.grad is None or beta.grad is None:
        return None
    return (gamma.detach() * gamma.grad + beta.detach() * beta.grad).float().abs()


class ImportanceMeter:
    """Scores of the named modules under one criterion. For gradient criteria, call `update()`
    after each backward; `scores()` averages what was seen (and is static otherwise)."""

    def __init__(self, modules: dict[str, nn.Module], criterion: str):
        if criterion not in CRITERIA:
            raise ValueError(f"unknown importance criterion {criterion!r}")
        self.modules, self.criterion = modules, criterion
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    @property
    def needs_gradients(self) -> bool:
        return self.criterion in GRADIENT_CRITERIA

    def update(self) -> None:
        if not self.needs_gradients:
            return
        seen = False
        for name, module in self.modules.items():
            scores = gradient_scores(module, self.criterion)
            if scores is None:
                continue
            seen = True
            self.sums[name] = scores if name not in self.sums else self.sums[name] + scores
        self.batches += int(seen)

    def average_across_ranks(self) -> None:
        """Data-parallel runs: every rank scored its own slice of the data; all take the mean."""
        for total in self.sums.values():
            mean_across_ranks(total)

    def reset(self) -> None:
        self.sums, self.batches = {}, 0

    def scores(self) -> dict[str, torch.Tensor]:
        if not self.needs_gradients:
            return {n: static_scores(m, self.criterion) for n, m in self.modules.items()}
        if self.batches == 0:
            raise PdpruneError(f"importance {self.criterion}: no gradients were seen (in your own "
                               "loop, call pruning.after_backward() after each backward)")
        return {name: total / self.batches for name, total in self.sums.items()}


def accumulate(meter: ImportanceMeter, model: nn.Module, batches: Iterable,
               device: torch.device) -> None:
    """One pass of forward + backward over `batches` (training data) feeding `meter`, without
    an optimizer step: no weight changes. Gradients are cleared before and after; BN running
    statistics are not touched (eval mode: the pass measures the trained network as it is)."""
    was_training = model.training
    model.eval()
    try:
        for x, y in tqdm(batches, desc="importance pass", unit="batch", leave=False,
                         disable=None):  # shown on a terminal only
            model.zero_grad(set_to_none=True)
            x, y = x.to(device), y.to(device)
            F.cross_entropy(model(x).float(), y).backward()
            meter.update()
        meter.average_across_ranks()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
