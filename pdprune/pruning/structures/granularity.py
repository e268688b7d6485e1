"""Weight granularities (docs/methods.md#granularities): what one mask element covers. A
granularity views a weight as rows of units: the threshold and the per-row budget act along
each row, and a unit's mask value is broadcast back over the weights it covers."""

from __future__ import annotations

import torch
from omegaconf import DictConfig


class Unstructured:
    """Every weight is a unit; the whole layer is one row."""

    name = "unstructured"
    pruned_per_row: int | None = None  # no fixed budget: the method's budget decides
    pattern: tuple[int, int] | None = None  # no N:M pattern for sparse kernels

    def supports(self, weight: torch.Tensor) -> bool:
        return True

    def units_per_row(self, weight: torch.Tensor) -> int:
        return weight.numel()

    def magnitudes(self, weight: torch.Tensor) -> torch.Tensor:
        """(rows, units) importance magnitudes |w|; used detached, for cuts and thresholds."""
        return weight.detach().abs().reshape(1, -1)

    def squares(self, weight: torch.Tensor) -> torch.Tensor:
        """(rows, units) squared magnitudes w^2, kept in the autograd graph (the PDP logit)."""
        return weight.square().reshape(1, -1)

    def expand(self, unit_values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Unit values broadcast back to the weight's shape."""
        return unit_values.reshape(weight.shape)


class NM:
    """N:M: in every group of M consecutive weights along the input dimension, N stay.

    A row is one group. For a conv (out, in, kh, kw) the groups run along the input channels at
    each kernel position (the layout sparse tensor cores read); for a linear (out, in) along in.
    Layers whose input dimension M does not divide are not supported (they stay dense).
    """

    name = "nm"

    def __init__(self, n: int, m: int):
        self.n, self.m = n, m
        self.pruned_per_row = m - n  # the budget is fixed by the pattern, not by a global cut
        self.pattern = (n, m)

    def supports(self, weight: torch.Tensor) -> bool:
        return weight.dim() in (2, 4) and weight.shape[1] % self.m == 0

    def units_per_row(self, weight: torch.Tensor) -> int:
        return self.m

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4:  # (out, in, kh, kw) -> (out, kh, kw, in): input channels innermost
            t = t.permute(0, 2, 3, 1)
        return t.reshape(-1, self.m)

    def magnitudes(self, weight: torch.Tensor) -> torch.Tensor:
        return self._rows(weight.detach().abs())

    def squares(self, weight: torch.Tensor) -> torch.Tensor:
        return self._rows(weight.square())

    def expand(self, unit_values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if weight.dim() == 4:
            out, cin, kh, kw = weight.shape
            return unit_values.reshape(out, kh, kw, cin).permute(0, 3, 1, 2)
        return unit_values.reshape(weight.shape)


Granularity = Unstructured | NM


def build_granularity(cfg: DictConfig) -> Granularity:
    if cfg.name == "unstructured":
        return Unstructured()
    if cfg.name == "nm":
        return NM(cfg.n, cfg.m)
    raise ValueError(f"granularity={cfg.name} is not implemented")
