"""Masks: hard binary or PDP's soft mask, for weights (one parametrization per layer: the
layer's forward sees mask(w)) and for channel groups (one mask per group, read by every
parametrized slice of it: structures/channels.py). Every mask has the same calls: `set(count,
scores)` prunes `count` units per row (binary masks keep the largest scores; soft masks move
their threshold), `hard(...)` is the decision, `ties(...)` what a threshold cannot decide,
`baked(weight)` the weight that stays when the mask is removed (w * hard here; STR's shrunk
weights, soft_threshold.py).
The maths: docs/methods.md#pdp."""

from __future__ import annotations

import torch
from torch import nn

from .selection import ThresholdSearch, keep_largest, midpoint_threshold
from .structures.granularity import Granularity


class BinaryMask(nn.Module):
    """w * mask with a stored 0/1 mask (magnitude, random). The mask is a buffer, so it is in
    the model's state_dict and a checkpoint restores it exactly."""

    needs_scores = True  # set() keeps the largest scores

    def __init__(self, weight: torch.Tensor, granularity: Granularity):
        super().__init__()
        self.granularity = granularity
        self.pruned = 0
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    @torch.no_grad()
    def set(self, count: int, scores: torch.Tensor) -> None:
        keep = keep_largest(scores, count)
        self.mask.copy_(self.granularity.expand(keep, self.mask))
        self.pruned = count

    def masked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def hard(self, weight: torch.Tensor) -> torch.Tensor:
        return self.mask

    def ties(self, weight: torch.Tensor) -> int:
        return 0  # top-k breaks ties: exactly the budget is kept

    @torch.no_grad()
    def baked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.hard(weight)


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
    """PDP's soft mask, a function of the weights alone (docs/methods.md#pdp).

    m = sigmoid((w^2 - t^2) / tau), t = midpoint of the magnitudes either side of the cut that
    prunes `self.pruned` units per row. t comes from detached weights; m stays in the autograd
    graph, so d(m w)/dw = m + (2 w^2 / tau) m (1 - m). All mask math is float32.
    """

    needs_scores = False  # the threshold follows the weights themselves

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

    def set(self, count: int, scores: torch.Tensor | None = None) -> None:
        self.pruned = count

    def masked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight  # nothing is decided before hardening: every weight scores as it is

    @torch.no_grad()
    def hard(self, weight: torch.Tensor) -> torch.Tensor:
        """The hardened mask in the weight's shape. A fixed pattern (N:M) must hold exactly:
        the largest per group, which is m >= 0.5 except that a tie on the threshold is broken
        instead of keeping both."""
        if self.granularity.pruned_per_row is not None and self.pruned:
            keep = keep_largest(self.granularity.magnitudes(weight), self.pruned)
        else:
            keep = self.hard_mask(weight)
        return self.granularity.expand(keep, weight)

    @torch.no_grad()
    def ties(self, w: torch.Tensor) -> int:
        """Units whose magnitude sits on the threshold: hardening may keep them all (none
        under a fixed pattern, which hardens by top-k)."""
        if self.granularity.pruned_per_row is not None:
            return 0
        if not 0 < self.pruned < self.granularity.units_per_row(w):
            return 0
        magnitudes = self.granularity.magnitudes(w.float())
        t = midpoint_threshold(magnitudes, self.pruned)
        return int(torch.isclose(magnitudes, t.expand_as(magnitudes), rtol=1e-6, atol=0).sum())

    @torch.no_grad()
    def baked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.hard(weight)


class ForwardScope:
    """Marks one forward of the model. Every member of a channel group (a stage's convs and
    BNs: a dozen parameters) reads the group's mask; inside one forward the weights are fixed,
    so the mask is computed once and shared, in one autograd graph. Outside a forward nothing
    is cached."""

    def __init__(self):
        self.active = False
        self.generation = 0

    def enter(self, *_) -> None:
        self.active = True
        self.generation += 1

    def exit(self, *_) -> None:
        self.active = False


class SoftChannelMask:
    """PDP on channels: m_c = sigmoid((||W_c||^2 - t^2) / tau), t the midpoint of the channel
    norms either side of the cut; t detached, m in the autograd graph. `channels` gives the
    group's squared norms (in the graph) and its size."""

    needs_scores = False
    version = None  # values change with the weights, every step

    def __init__(self, channels, tau: float, scope: ForwardScope | None = None):
        self.channels, self.tau = channels, tau
        self.pruned = 0
        self.search = ThresholdSearch()
        self.scope = scope or ForwardScope()
        self._cached: tuple[int, torch.Tensor] | None = None

    def set(self, count: int, scores: torch.Tensor | None = None) -> None:
        self.pruned = count

    def values(self) -> torch.Tensor | None:
        if self.pruned == 0:
            return None
        if not self.scope.active:
            return self._compute()
        if self._cached is None or self._cached[0] != self.scope.generation:
            self._cached = (self.scope.generation, self._compute())
        return self._cached[1]

    def _compute(self) -> torch.Tensor:
        squares = self.channels.norms_squared()
        if self.pruned >= squares.numel():
            return torch.zeros_like(squares)
        with torch.no_grad():
            t = self.search(squares.detach().sqrt().reshape(1, -1), self.pruned).reshape(())
        return torch.sigmoid((squares - t * t) / self.tau)

    @torch.no_grad()
    def hard(self) -> torch.Tensor:
        values = self.values()
        if values is None:
            return torch.ones(self.channels.size, dtype=torch.bool)
        return (values >= 0.5).cpu()

    @torch.no_grad()
    def ties(self) -> int:
        if not 0 < self.pruned < self.channels.size:
            return 0
        norms = self.channels.norms().reshape(1, -1)
        t = midpoint_threshold(norms, self.pruned)
        return int(torch.isclose(norms, t.expand_as(norms), rtol=1e-6, atol=0).sum())

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, count: int) -> None:
        self.pruned = count


class BinaryChannelMask:
    """Magnitude / random on channels: a stored keep vector, recomputed when the target moves."""

    needs_scores = True

    def __init__(self, size: int, device: torch.device):
        self.keep = torch.ones(size, dtype=torch.bool)
        self.device = device
        self.pruned = 0
        self._values: torch.Tensor | None = None
        self.version = 0  # counts changes of `keep`

    def set(self, count: int, scores: torch.Tensor) -> None:
        self._set_keep(keep_largest(scores.reshape(1, -1), count)[0])

    def _set_keep(self, keep: torch.Tensor) -> None:
        self.keep = keep.cpu()
        self.pruned = int((~self.keep).sum())
        self._values = self.keep.to(device=self.device, dtype=torch.float32)
        self.version += 1

    def values(self) -> torch.Tensor | None:
        if self.pruned == 0:
            return None
        return self._values

    def hard(self) -> torch.Tensor:
        return self.keep

    def ties(self) -> int:
        return 0

    def state_dict(self) -> dict:
        return {"keep": self.keep.clone()}

    def load_state_dict(self, state: dict, count: int) -> None:
        self._set_keep(state["keep"])
