"""The train loop: epochs of optimizer steps, with the pruner called before every step,
evaluation, metrics and a checkpoint at the end of every epoch."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.bundle import DataBundle
from ..distributed import SINGLE, World, data_parallel, global_mean_scale
from .checkpoint import CHECKPOINT, restore_rng_states, rng_states, save_checkpoint
from .distill import Distiller
from .evaluate import autocast, evaluate
from .metrics import MetricsLog

log = logging.getLogger("pdprune")


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    train_time_s: float = 0.0  # wall time spent in completed epochs (survives resumes)


class Trainer:
    def __init__(self, model: nn.Module, data: DataBundle, pruner, optimizer, lr_scheduler, *,
                 epochs: int, device: torch.device, amp_dtype: torch.dtype | None, run_dir: Path,
                 label_smoothing: float = 0.0, grad_clip_norm: float | None = None,
                 progress: bool = True, config: dict | None = None,
                 channels_last: bool = False, compile_model: bool = False,
                 distiller: Distiller | None = None, world: World = SINGLE):
        self.model, self.data, self.pruner = model, data, pruner
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.epochs, self.device, self.amp_dtype = epochs, device, amp_dtype
        self.run_dir, self.label_smoothing, self.progress = run_dir, label_smoothing, progress
        self.grad_clip_norm = grad_clip_norm
        self.distiller = distiller  # None: the loss is plain cross-entropy
        self.world = world  # one of several data-parallel ranks: only rank 0 writes
        self.config = config or {}  # the resolved run config, saved with every checkpoint
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # what runs the forward; state_dicts always come from the plain model
        self.compile_model = compile_model
        self.forward = torch.compile(model) if compile_model else model  # evaluation
        self.train_forward = self._parallel(model)  # training: under DDP with several ranks
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        self.state = TrainState()

    def _parallel(self, model: nn.Module) -> nn.Module:
        if not self.world.active:
            return self.forward
        wrapped = data_parallel(model, self.device)
        return torch.compile(wrapped) if self.compile_model else wrapped

    # ------------------------------------------------------------------ training

    def fit(self) -> TrainState:
        if self.world.is_main:
            self.metrics.truncate(self.state.epoch)
        for epoch in range(self.state.epoch, self.epochs):
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            reshaped = self.pruner.begin_epoch(epoch)
            for param in reshaped:
                self.optimizer.state.pop(param, None)  # momentum of the old shape
            if reshaped and self.world.active:  # DDP's buckets hold the old parameters
                self.train_forward = self._parallel(self.model)
            train = self.train_epoch(epoch)
            pruning = self.pruner.end_epoch(epoch + 1)
            self.lr_scheduler.step()
            val = evaluate(self.forward, self.data.val, self.device, self.amp_dtype)
            self.state.epoch = epoch + 1
            self.state.train_time_s += time.perf_counter() - started
            record = {
                "epoch": epoch + 1, "step": self.state.step, "lr": lr,
                "train_loss": train["loss"], "train_top1": train["top1"],
                **{f"val_{k}": v for k, v in val.items()},
                "target_sparsity": self.pruner.target_sparsity,
                "achieved_sparsity": self.pruner.achieved_sparsity(),
                **pruning,
                "epoch_time_s": round(time.perf_counter() - started, 3),
            }
            if self.world.is_main:
                self.metrics.append(record)
            log.info("epoch %d/%d  loss %.4f  val top1 %.4f  sparsity %.3f (target %.3f)  %.1fs%s",
                     epoch + 1, self.epochs, train["loss"], val["top1"],
                     record["achieved_sparsity"], record["target_sparsity"],
                     record["epoch_time_s"], _extra(pruning))
            self.save_checkpoint()
        return self.state

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        bar = tqdm(self.data.train, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                   leave=False, dynamic_ncols=True,
                   disable=None if self.progress and self.world.is_main else True)
        for x, y in bar:
            x, y = self.to_device(x, y)
            loss, logits = self.train_step(x, y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
        bar.close()
        return {"loss": loss_sum.item() / max(1, seen), "top1": correct.item() / max(1, seen)}

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch already on the device; no host synchronisation.
        Returns the detached loss and logits."""
        self.pruner.before_step(self.state.step)
        with autocast(self.device, self.amp_dtype):
            logits = self.train_forward(x)
            if self.distiller is not None:
                loss = self.distiller.loss(x, logits, y, self.label_smoothing)
        if self.distiller is None:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        # several ranks: each weights its slice so DDP's average is the global batch's mean
        if self.world.active:
            loss_to_reduce = loss * global_mean_scale(len(y), self.device)
        else:
            loss_to_reduce = loss
        loss_to_reduce.backward()
        self.pruner.after_backward()
        if self.grad_clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        self.state.step += 1
        return loss.detach(), logits.detach()

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT, {
            "state": vars(self.state).copy(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "pruner": self.pruner.state_dict(),
            "train_loader": self.data.train.state_dict(),
            "rng": rng_states(),
            "config": self.config,
        })

    def load_checkpoint(self, payload: dict) -> None:
        # the pruner first: layer pruning restores the architecture the weights belong to
        self.pruner.load_state_dict(payload["pruner"])
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.lr_scheduler.load_state_dict(payload["lr_scheduler"])
        self.data.train.load_state_dict(payload["train_loader"])
        restore_rng_states(payload["rng"])
        self.state = TrainState(**payload["state"])


def _extra(fields: dict) -> str:
    """What a pruner added to an epoch's record (e.g. EPI), for the log line."""
    return "".join(f"  {k} {v:.4f}" if isinstance(v, float) else f"  {k} {'-' if v is None else v}"
                   for k, v in fields.items())
