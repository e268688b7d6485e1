"""Training-time pruning: one driver (core.Pruner) composed of a structure, a scorer, a mask,
a budget and a schedule; build.py makes it from a config. The public API on top: pdprune.Pruning.
"""

from .build import build_pruner, check_targets
from .core import Pruner
from .structures.base import ExportPlan

__all__ = ["ExportPlan", "Pruner", "build_pruner", "check_targets"]
