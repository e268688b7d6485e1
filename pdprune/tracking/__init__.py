"""Where a run reports besides its own files: the `logger` config group (csv, tensorboard,
mlflow, wandb; several at once). docs/tracking.md"""

from .context import RunContext
from .tracker import Tracker, build_tracker

__all__ = ["RunContext", "Tracker", "build_tracker"]
