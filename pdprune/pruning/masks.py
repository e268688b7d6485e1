"""Mask parametrizations (torch.nn.utils.parametrize): the layer's forward sees mask(w)."""

from __future__ import annotations

import torch
from torch import nn

from .granularity import Unstructured
from .selection import midpoint_threshold


class BinaryMask(nn.Module):
    """w * mask with a stored 0/1 mask (magnitude, random). The mask is a buffer, so it is in
    the model's state_dict and a checkpoint restores it exactly."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class PDPSoftMask(nn.Module):
    """PDP's soft mask, a function of the weights alone (METHODS.md section 1).

    m = sigmoid((w^2 - t^2) / tau), t = midpoint of the magnitudes either side of the cut that
    prunes `self.pruned` units per row. t comes from detached weights; m stays in the autograd
    graph, so d(m w)/dw = m + (2 w^2 / tau) m (1 - m). All mask math is float32.
    """

    def __init__(self, granularity: Unstructured, tau: float):
        super().__init__()
        self.granularity = granularity
        self.tau = tau
        self.pruned = 0  # units per row to prune now; set by the pruner (host int: no syncs)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.pruned == 0:
            return weight
        w = weight.float()
        return (self.granularity.expand(self.soft_mask(w), w) * w).to(weight.dtype)

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return midpoint_threshold(self.granularity.magnitudes(w.float()), self.pruned)

    def soft_mask(self, w: torch.Tensor) -> torch.Tensor:
        """(rows, units) mask values in (0, 1)."""
        squares = self.granularity.squares(w.float())
        if self.pruned >= squares.shape[-1]:
            return torch.zeros_like(squares)
        t = self.threshold(w)
        return torch.sigmoid((squares - t * t) / self.tau)

    @torch.no_grad()
    def hard_mask(self, w: torch.Tensor) -> torch.Tensor:
        """(rows, units) bool: the hardened mask m >= 0.5."""
        if self.pruned == 0:
            return torch.ones_like(self.granularity.magnitudes(w), dtype=torch.bool)
        return self.soft_mask(w) >= 0.5

    @torch.no_grad()
    def ties(self, w: torch.Tensor) -> int:
        """Units whose magnitude sits on the threshold: hardening may keep them all."""
        if not 0 < self.pruned < self.granularity.units_per_row(w):
            return 0
        magnitudes = self.granularity.magnitudes(w.float())
        t = midpoint_threshold(magnitudes, self.pruned)
        return int(torch.isclose(magnitudes, t.expand_as(magnitudes), rtol=1e-6, atol=0).sum())
