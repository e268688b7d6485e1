"""What the pruner hands to measuring: one result per pruned layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LayerResult:
    """One layer after hardening."""

    name: str
    shape: tuple[int, ...]
    params: int
    expected_pruned: int  # what the budget asked for (in weights)
    pruned: int  # what the hardened mask zeroed
    ties: int  # weights on the threshold, which may be kept or not
    groups: int | None = None  # N:M: groups in the layer
    groups_exact: int | None = None  # N:M: groups holding exactly N non-zeros after baking

    @property
    def sparsity(self) -> float:
        return self.pruned / self.params
