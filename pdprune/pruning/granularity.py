"""What one mask element covers. A granularity views a weight as rows of units:
the threshold and the per-row budget act along each row, and a unit's mask value is
broadcast back over the weights it covers."""

from __future__ import annotations

import torch
from omegaconf import DictConfig


class Unstructured:
    """Every weight is a unit; the whole layer is one row."""

    name = "unstructured"

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


def build_granularity(cfg: DictConfig) -> Unstructured:
    if cfg.name == "unstructured":
        return Unstructured()
    raise ValueError(f"granularity={cfg.name} is not implemented")
