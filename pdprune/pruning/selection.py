"""Selections over magnitudes: the PDP midpoint threshold, exact top-k masks, budgets."""

from __future__ import annotations

import torch


def midpoint_threshold(magnitudes: torch.Tensor, pruned: int) -> torch.Tensor:
    """Per row, t = (min of the kept + max of the pruned) / 2 when the `pruned` smallest go.

    magnitudes: (rows, units), detached. Returns (rows, 1). Needs 0 < pruned < units.
    """
    low = magnitudes.kthvalue(pruned, dim=-1, keepdim=True).values  # largest pruned
    high = magnitudes.kthvalue(pruned + 1, dim=-1, keepdim=True).values  # smallest kept
    return (low + high) / 2


def keep_largest(scores: torch.Tensor, pruned: int) -> torch.Tensor:
    """Bool mask over (rows, units) keeping exactly units - pruned per row (ties broken by topk)."""
    keep = scores.shape[-1] - pruned
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if keep > 0:
        mask.scatter_(-1, scores.topk(keep, dim=-1).indices, True)
    return mask


def uniform_budget(units: list[int], sparsity: float) -> list[int]:
    """Units to prune per layer when every layer is pruned to `sparsity`."""
    return [round(sparsity * n) for n in units]


def global_budget(scores: list[torch.Tensor], sparsity: float) -> list[int]:
    """Units to prune per layer from ONE cut over all layers' scores.

    Exactly round(sparsity * total) units go, the smallest scores first (a stable sort breaks
    ties by position, so the counts are deterministic).
    """
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    total = round(sparsity * flat.numel())
    sizes = torch.tensor([s.numel() for s in scores])
    if total == 0:
        return [0] * len(scores)
    cut = torch.argsort(flat, stable=True)[:total]
    layer_of = torch.repeat_interleave(torch.arange(len(scores)), sizes).to(cut.device)
    return torch.bincount(layer_of[cut], minlength=len(scores)).tolist()
