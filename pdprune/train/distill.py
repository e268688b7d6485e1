"""Knowledge distillation from the dense model (the PDP paper's BERT recipe).

loss = weight * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - weight) * CE.
The T^2 keeps the soft term's gradient on the scale of the hard one (Hinton et al.); the paper
uses weight 0.95.

The teacher is the dense model fine-tuned on the same task: a finished dense run given by
trainer.distill.teacher, or a dense fine-tuning phase that runs first, inside this run, into
<run>/teacher/ (kept there, so a resumed run does not fine-tune it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from ..models.checkpoint import load_weights

log = logging.getLogger("pdprune")

TEACHER_DIR = "teacher"
WEIGHTS = "model.safetensors"


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      temperature: float, weight: float,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """weight * T^2 * KL(teacher_T || student_T) + (1 - weight) * cross-entropy, batch mean."""
    student, teacher = student.float(), teacher.float()
    task = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1),
                    F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return weight * temperature ** 2 * soft + (1 - weight) * task


class Distiller:
    """The frozen teacher and the loss; the Trainer calls it in place of plain cross-entropy."""

    def __init__(self, teacher: nn.Module, temperature: float, weight: float):
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.weight = temperature, weight

    def loss(self, x: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
             label_smoothing: float = 0.0) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return distillation_loss(logits, teacher_logits, labels, self.temperature, self.weight,
                                 label_smoothing)


def teacher_weights(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The teacher's weights file when one exists: the run given by distill.teacher, or a
    teacher this run (or the run it resumes) already fine-tuned."""
    if cfg.trainer.distill.teacher:
        path = Path(cfg.trainer.distill.teacher).expanduser()
        return path / WEIGHTS if path.is_dir() else path
    folders = [run_dir]
    if cfg.trainer.resume:
        resumed = Path(cfg.trainer.resume).expanduser()
        folders.append(resumed if resumed.is_dir() else resumed.parent.parent)
    return next((f / TEACHER_DIR / WEIGHTS for f in folders
                 if (f / TEACHER_DIR / WEIGHTS).is_file()), None)


def prepare_teacher(cfg: DictConfig, run_dir: Path, build: Callable[[], nn.Module],
                    fine_tune: Callable[[nn.Module, Path], None]) -> nn.Module:
    """The dense teacher: loaded from its weights, or built and fine-tuned now (`fine_tune`
    trains a model densely into a folder and leaves its weights there as model.safetensors)."""
    teacher = build()
    found = teacher_weights(cfg, run_dir)
    if found is not None:
        log.info("distillation: teacher from %s", found)
        return load_weights(teacher, found)
    folder = run_dir / TEACHER_DIR
    log.info("distillation: fine-tuning the dense teacher for %d epochs into %s",
             cfg.trainer.distill.teacher_epochs, folder)
    fine_tune(teacher, folder)
    return teacher
