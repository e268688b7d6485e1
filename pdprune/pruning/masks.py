"""Mask parametrizations (torch.nn.utils.parametrize): the layer's forward sees mask(w)."""

from __future__ import annotations

import torch
from torch import nn

from .granularity import Granularity
from .selection import ThresholdSearch, midpoint_threshold


class BinaryMask(nn.Module):
    """w * mask with a stored 0/1 mask (magnitude, random). The mask is a buffer, so it is in
    the model's state_dict and a checkpoint restores it exactly."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class _MaskedWeight(torch.autograd.Function):
    """Unstructured PDP in few memory passes: w_hat = m * w, m = sigmoid((w^2 - t^2) / tau).

    The backward is the exact derivative with t held constant (t comes from a selection):
    d w_hat / dw = m + (2 w^2 / tau) m (1 - m). Equal to autograd through the plain formula
    (tests/test_pdp_mask.py checks both against hand-computed values and each other).
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, t_squared: torch.Tensor, tau: float) -> torch.Tensor:
        w = weight.float()
        m = torch.square(w).sub_(t_squared).div_(tau).sigmoid_()
        ctx.save_for_backward(w, m)
        ctx.tau = tau
        return (m * w).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, m = ctx.saved_tensors
        # m (1 + (2 w^2 / tau) (1 - m)), computed in place in one buffer
        slope = torch.rsub(m, 1).mul_(w).mul_(w).mul_(2 / ctx.tau).add_(1).mul_(m)
        return slope.mul_(grad.float()).to(grad.dtype), None, None


class PDPSoftMask(nn.Module):
    """PDP's soft mask, a function of the weights alone (METHODS.md section 1).

    m = sigmoid((w^2 - t^2) / tau), t = midpoint of the magnitudes either side of the cut that
    prunes `self.pruned` units per row. t comes from detached weights; m stays in the autograd
    graph, so d(m w)/dw = m + (2 w^2 / tau) m (1 - m). All mask math is float32.
    """

    def __init__(self, granularity: Granularity, tau: float):
        super().__init__()
        self.granularity = granularity
        self.tau = tau
        self.pruned = 0  # units per row to prune now; set by the pruner (host int: no syncs)
        self.search = ThresholdSearch()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.pruned == 0:
            return weight
        if self.granularity.name == "unstructured" and self.pruned < weight.numel():
            t = self.threshold(weight)
            return _MaskedWeight.apply(weight, (t * t).reshape(()), self.tau)
        w = weight.float()
        return (self.granularity.expand(self.soft_mask(w), w) * w).to(weight.dtype)

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.search(self.granularity.magnitudes(w.float()), self.pruned)

    def soft_mask(self, w: torch.Tensor) -> torch.Tensor:
        """(rows, units) mask values in (0, 1), through plain autograd."""
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
