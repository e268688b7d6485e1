"""Training: the loop, evaluation, checkpoints and the metrics log."""

from .checkpoint import check_same_run, load_checkpoint, resolve_checkpoint
from .evaluate import evaluate
from .loop import Trainer, TrainState
from .optim import build_lr_scheduler, build_optimizer

__all__ = ["TrainState", "Trainer", "build_lr_scheduler", "build_optimizer", "check_same_run",
           "evaluate", "load_checkpoint", "resolve_checkpoint"]
