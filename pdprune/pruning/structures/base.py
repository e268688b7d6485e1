"""The interface every structure implements, and what it hands to the exporter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...measure.results import LayerResult


@dataclass
class ExportPlan:
    """How the pruned units leave the exported model.

    removed_units: {root layer: channel indices} that a compact export removes physically
      (channel structures), or None when the structure cannot remove its units (`reason`).
    shallower: the live model already lost its pruned blocks: it is exported as it is, as a
      program that loads without pdprune.
    pattern: the N:M pattern (n, m) of the zeros, for sparse kernels; None when there is none.
    dense_state: the weights in the dense architecture's shapes, zeros for what was removed
      during training (None: the live model has them).
    """

    removed_units: dict[str, torch.Tensor] | None = None
    reason: str = ""
    shallower: bool = False
    pattern: tuple[int, int] | None = None
    dense_state: dict[str, torch.Tensor] | None = None


class Structure:
    """What a mask unit covers, the masks on it, and how a decision reaches the tensors.

    Groups are what budgets count over (a layer, a coupled channel group): `sizes()` gives
    each group's units per row and `masks` one mask per group (masks.py). The defaults here
    are those of a structure without masks (dense, block removal)."""

    unit = "weights"  # what its sparsity counts: weights | channels | blocks
    shrinks_network = False  # whether pruned units make the trained network smaller
    fixed_per_row: int | None = None  # N:M: units pruned per row, fixed by the pattern
    masks: list = []
    left_dense: list[str] = []  # prunable by type, but the structure cannot cover them

    names: list[str]  # the layers (or blocks) it prunes, for the log and the summary
    num_prunable: int  # weights under its masks

    def sizes(self) -> list[int]:
        return []

    def check(self, target: float, budget: str) -> None:
        """Refuse a target the budget cannot reach (ConfigError naming `sparsity`)."""

    def final_sparsity(self, target: float) -> float:
        return target

    def fraction(self, counts: list[int]) -> float:
        """The fraction of its units that `counts` prune."""
        return 0.0

    def achieved(self) -> float:
        """The fraction of its units the (hardened) masks prune right now."""
        raise NotImplementedError

    def achieved_by_layer(self) -> dict[str, float]:
        """Each pruned layer's fraction of units the (hardened) masks prune right now (what
        the loggers plot per epoch); empty where units are not per layer."""
        return {}

    def attach(self) -> None:
        """Put the masks on the model."""

    def begin_epoch(self, epoch: int, pruning) -> list[nn.Parameter]:
        """Before an epoch (the loader idle); returns parameters whose shape changed."""
        return []

    def harden(self) -> None:
        """Make soft masks binary at their current decision (method.harden_at=ramp_end)."""

    def compact(self, optimizer: torch.optim.Optimizer | None) -> bool:
        """Remove from the live model the units whose pruning is final, the optimizer's
        parameters and state following; whether the model changed. Most cannot."""
        return False

    def finalize(self, counts: list[int]) -> list[LayerResult]:
        """Harden, bake, remove the parametrizations; one result per pruned layer."""
        raise NotImplementedError

    def export_plan(self) -> ExportPlan:
        return ExportPlan(reason="no unit of it can be removed")

    def summary(self, counts: list[int], target: float) -> dict:
        """Its own sections of summary.json."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, counts: list[int],
                        optimizer: torch.optim.Optimizer | None = None) -> None:
        pass
