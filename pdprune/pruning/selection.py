"""Selections over magnitudes: the PDP midpoint threshold, exact top-k masks, budgets
(docs/methods.md#budgets)."""

from __future__ import annotations

import torch


def midpoint_threshold(magnitudes: torch.Tensor, pruned: int) -> torch.Tensor:
    """Per row, t = (min of the kept + max of the pruned) / 2 when the `pruned` smallest go.

    magnitudes: (rows, units), detached. Returns (rows, 1). Needs 0 < pruned < units.
    The reference: two full selections. PDP's hot path uses ThresholdSearch, which returns
    the same value to the bit.
    """
    low = magnitudes.kthvalue(pruned, dim=-1, keepdim=True).values  # largest pruned
    high = magnitudes.kthvalue(pruned + 1, dim=-1, keepdim=True).values  # smallest kept
    return (low + high) / 2


def _next_up(low: torch.Tensor, magnitudes: torch.Tensor, pruned: int) -> torch.Tensor:
    """The (pruned+1)-th smallest per row given the pruned-th (`low`): low itself when it is
    tied, else the smallest value above it. Device ops only: no host synchronisation."""
    ties = (magnitudes <= low).sum(dim=-1, keepdim=True) > pruned
    above = torch.where(magnitudes > low, magnitudes, torch.inf).amin(dim=-1, keepdim=True)
    return torch.where(ties, low, above)


class ThresholdSearch:
    """midpoint_threshold, made cheap for a threshold recomputed every step (PDP).

    On the CPU the cut moves little between steps, so the previous threshold brackets it:
    count what lies below the bracket and select only inside it (a few percent of the
    weights), widening the bracket and falling back to a full selection when it misses. On
    CUDA one kthvalue plus a masked min replaces the second selection without any host sync.
    Either way the result equals midpoint_threshold exactly.
    """

    def __init__(self, width: float = 0.02):
        self.width = width  # bracket half-width, relative to the last threshold
        self.last: torch.Tensor | None = None

    def __call__(self, magnitudes: torch.Tensor, pruned: int) -> torch.Tensor:
        if magnitudes.is_cuda or magnitudes.shape[0] != 1:
            low = magnitudes.kthvalue(pruned, dim=-1, keepdim=True).values
            return (low + _next_up(low, magnitudes, pruned)) / 2
        t = self._bracketed(magnitudes[0], pruned) if self.last is not None else None
        if t is None:
            t = midpoint_threshold(magnitudes, pruned)
            self.width = min(1.0, self.width * 2)
        else:
            self.width = max(1e-3, self.width * 0.9)
        self.last = t
        return t

    def _bracketed(self, values: torch.Tensor, pruned: int) -> torch.Tensor | None:
        t = float(self.last)
        lo, hi = t * (1 - self.width), t * (1 + self.width)
        at_least_lo = values >= lo
        below = values.numel() - int(at_least_lo.sum())
        inside = values[at_least_lo & (values <= hi)]
        k = pruned - below  # the cut's neighbours are the k-th and (k+1)-th inside the bracket
        if k < 1 or k + 1 > inside.numel():
            return None
        pair = inside.kthvalue(k).values, inside.kthvalue(k + 1).values
        return ((pair[0] + pair[1]) / 2).reshape(1, 1)


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


def global_total(units: int, sparsity: float) -> int:
    """Units one global cut prunes out of `units`."""
    return round(sparsity * units)


def global_budget(scores: list[torch.Tensor], sparsity: float) -> list[int]:
    """Units to prune per layer from ONE cut over all layers' scores.

    Exactly round(sparsity * total) units go, the smallest scores first (a stable sort breaks
    ties by position, so the counts are deterministic).
    """
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    total = global_total(flat.numel(), sparsity)
    sizes = torch.tensor([s.numel() for s in scores])
    if total == 0:
        return [0] * len(scores)
    cut = torch.argsort(flat, stable=True)[:total]
    layer_of = torch.repeat_interleave(torch.arange(len(scores)), sizes).to(cut.device)
    return torch.bincount(layer_of[cut], minlength=len(scores)).tolist()


def kept_options(channels: int, multiple: int) -> list[int]:
    """Kept counts a group of `channels` may end with: multiples of `multiple`, or all."""
    multiple = max(1, multiple)
    return sorted({*range(multiple, channels + 1, multiple), channels})


def round_kept(channels: list[int], pruned: list[int], multiple: int) -> list[int]:
    """Pruned counts moved so that every group keeps a multiple of `multiple` channels (or all
    of them), with the total kept as near the unrounded total as whole steps allow.

    Why: CPU kernels (oneDNN, onnxruntime's NCHWc) work on channel blocks of 8 or 16; a layer
    left with 47 channels falls off the blocked path, and measured slower than the dense model
    in onnxruntime. Each group starts at the allowed count just below its own kept count; then
    groups move up one step, nearest first, while that brings the total closer. Every group
    keeps at least one channel (or one block), also with multiple=1: a group pruned whole would
    cut the network in two.
    """
    allowed = [kept_options(n, multiple) for n in channels]
    kept = [n - p for n, p in zip(channels, pruned, strict=True)]
    low = [max([a for a in options if a <= k], default=options[0])
           for options, k in zip(allowed, kept, strict=True)]
    high = [min([a for a in options if a >= k], default=options[-1])
            for options, k in zip(allowed, kept, strict=True)]
    rounded, missing = list(low), sum(kept) - sum(low)
    by_nearness = sorted(range(len(kept)), key=lambda g: (high[g] - kept[g], g))
    for g in by_nearness:
        step = high[g] - low[g]
        if 0 < step < 2 * missing:  # moving up makes |total difference| smaller
            rounded[g], missing = high[g], missing - step
    return [n - k for n, k in zip(channels, rounded, strict=True)]
