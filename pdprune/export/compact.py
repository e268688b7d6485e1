"""Compact export: pruned channels physically removed, and proved harmless on a real batch.

Removing a channel whose output is exactly zero leaves the function unchanged, but not the
float32 rounding: convolutions over fewer input channels add their products in another order.
In a deep network (ResNet-50) that alone moves fp32 logits by ~1e-5. So the pass/fail check
runs both models in float64, where rounding is ~1e-13 and any real change of function (a
wrong channel removed, a bias left on a pruned channel) stands out by orders of magnitude;
the fp32 difference is measured and reported beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PdpruneError
from ..pruning.structures.coupled import remove_channels

TOLERANCE = 1e-5  # max |compact - masked| on a real batch, eval mode, float64


@dataclass
class CompactCheck:
    """Max abs output differences of the compact model from the masked one."""

    fp64: float  # the check: the two functions are the same
    fp32: float  # what a user running both in fp32 sees (rounding included)


@torch.no_grad()
def max_abs_difference(a: nn.Module, b: nn.Module, batch: torch.Tensor,
                       dtype: torch.dtype = torch.float32) -> float:
    """Largest elementwise difference of two models' eval-mode outputs on `batch`, computed in
    `dtype` (on copies when that is not the models' own)."""
    if dtype != torch.float32:
        a, b = copy.deepcopy(a).to(dtype), copy.deepcopy(b).to(dtype)
    modes = a.training, b.training
    a.eval(), b.eval()
    try:
        return float((a(batch.to(dtype)) - b(batch.to(dtype))).abs().max())
    finally:
        a.train(modes[0]), b.train(modes[1])


def compact_model(masked: nn.Module, pruned: dict[str, torch.Tensor],
                  batch: torch.Tensor) -> tuple[nn.Module, CompactCheck]:
    """A smaller dense copy of the hardened `masked` model without the `pruned` channels
    ({root layer: channel indices}), and its output differences from `masked` on `batch`.
    Raises when the float64 difference exceeds TOLERANCE: an export that changes the model's
    function must never pass silently. Built and compared on the CPU, where fp32 is fp32 (CUDA
    convolutions may run in TF32) and the result does not depend on which GPU trained it."""
    masked, batch = copy.deepcopy(masked).cpu().float(), batch.cpu().float()
    compact = remove_channels(copy.deepcopy(masked), batch[:1], pruned)
    check = CompactCheck(fp64=max_abs_difference(masked, compact, batch, torch.float64),
                         fp32=max_abs_difference(masked, compact, batch))
    if not check.fp64 <= TOLERANCE:
        raise PdpruneError(f"export.compact: the compact model's outputs differ from the masked "
                           f"model's by {check.fp64:.3g} in float64 (> {TOLERANCE:g}); "
                           "not exported")
    return compact, check
