"""Compact export: pruned channels physically removed, and proved harmless on a real batch."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import PdpruneError
from ..pruning.channel_groups import remove_channels

TOLERANCE = 1e-5  # max |compact - masked| on a real batch, eval mode, fp32


@torch.no_grad()
def max_abs_difference(a: nn.Module, b: nn.Module, batch: torch.Tensor) -> float:
    """Largest elementwise difference of two models' eval-mode fp32 outputs on `batch`."""
    modes = a.training, b.training
    a.eval(), b.eval()
    try:
        return float((a(batch.float()).float() - b(batch.float()).float()).abs().max())
    finally:
        a.train(modes[0]), b.train(modes[1])


def compact_model(masked: nn.Module, pruned: dict[str, torch.Tensor],
                  batch: torch.Tensor) -> tuple[nn.Module, float]:
    """A smaller dense copy of the hardened `masked` model without the `pruned` channels
    ({root layer: channel indices}), and its max abs output difference from `masked` on
    `batch`. Raises when that difference exceeds TOLERANCE: an export that changes the model's
    function must never pass silently. Built and compared on the CPU, where fp32 is fp32 (CUDA
    convolutions may run in TF32) and the result does not depend on which GPU trained it."""
    masked, batch = copy.deepcopy(masked).cpu(), batch.cpu()
    compact = remove_channels(copy.deepcopy(masked), batch[:1], pruned)
    difference = max_abs_difference(masked, compact, batch)
    if not difference <= TOLERANCE:
        raise PdpruneError(f"export.compact: the compact model's outputs differ from the masked "
                           f"model's by {difference:.3g} (> {TOLERANCE:g}); not exported")
    return compact, difference
