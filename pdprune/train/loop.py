"""The train loop: epochs of optimizer steps, with the pruner called before every step,
evaluation, metrics and a checkpoint at the end of every epoch (and mid-epoch every
trainer.checkpoint_every, and when a stop signal arrives). A non-finite loss ends the run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..api import Pruning
from ..data.bundle import DataBundle
from ..distributed import SINGLE, World, data_parallel, global_mean_scale
from ..errors import PdpruneError, Preempted
from ..measure.training_cost import network_size
from ..tracking import Tracker
from .checkpoint import (
    CHECKPOINT,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    temporary,
    unfit_checkpoint,
)
from .distill import Distiller
from .evaluate import autocast, evaluate
from .metrics import MetricsLog
from .preempt import CheckpointClock, StopSignals

log = logging.getLogger("pdprune")

# Steps between the host's reads of flags kept on the device (CUDA) or agreed across ranks:
# reading one makes the host wait for the GPU, so not every step.
SYNC_EVERY = 20


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    train_time_s: float = 0.0  # wall time spent in completed epochs (survives resumes)


class FiniteLoss:
    """Notices the first non-finite training loss. The CPU checks each loss as it comes (free
    there). On a GPU, or with several ranks, the device keeps the first bad step and its loss
    (a few tiny kernels, no wait) and `read` fetches them, every SYNC_EVERY steps, at the end of
    each epoch and before every checkpoint."""

    def __init__(self, device: torch.device, deferred: bool):
        self.deferred = deferred
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def observe(self, loss: torch.Tensor, step: int) -> tuple[int, float] | None:
        """(step, loss) when checked now and not finite."""
        if not self.deferred:
            return None if torch.isfinite(loss) else (step, loss.item())
        fresh = ~torch.isfinite(loss) & (self.bad_step < 0)
        self.bad_step = torch.where(fresh, step, self.bad_step)
        self.bad_loss = torch.where(fresh, loss.detach().float(), self.bad_loss)
        return None

    def read(self) -> tuple[int, float] | None:
        if not self.deferred or int(self.bad_step) < 0:
            return None
        return int(self.bad_step), float(self.bad_loss)


class Trainer:
    def __init__(self, model: nn.Module, data: DataBundle, pruning: Pruning, optimizer,
                 lr_scheduler, *, epochs: int, device: torch.device,
                 amp_dtype: torch.dtype | None, run_dir: Path,
                 label_smoothing: float = 0.0, grad_clip_norm: float | None = None,
                 progress: bool = True, config: dict | None = None,
                 channels_last: bool = False, compile_model: bool = False,
                 distiller: Distiller | None = None, world: World = SINGLE,
                 log_every_n_steps: int = 20):
        self.model, self.data, self.pruning = model, data, pruning
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.epochs, self.device, self.amp_dtype = epochs, device, amp_dtype
        self.run_dir, self.label_smoothing, self.progress = run_dir, label_smoothing, progress
        self.grad_clip_norm = grad_clip_norm
        self.distiller = distiller  # None: the loss is plain cross-entropy
        self.world = world  # one of several data-parallel ranks: only rank 0 writes
        self.tracker = Tracker()  # the loggers (logger=...): run() sets them on rank 0
        self.log_every_n_steps = log_every_n_steps
        self.config = config or {}  # the resolved run config, saved with every checkpoint
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # what runs the forward; state_dicts always come from the plain model
        self.compile_model = compile_model
        self.forward = torch.compile(model) if compile_model else model  # evaluation
        self.train_forward = self._parallel(model)  # training: under DDP with several ranks
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")
        pruning.bind(optimizer)
        self.state = TrainState()
        self.finite = FiniteLoss(device, deferred=device.type != "cpu" or world.active)
        self.clock = CheckpointClock(self.config.get("trainer", {}).get("checkpoint_every"))
        self.signals = StopSignals()
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.epoch_progress: dict | None = None  # a mid-epoch checkpoint's partial epoch
        self.resume_progress: dict | None = None  # the one a resumed run starts from

    def rebuild_wrappers(self) -> None:
        """DDP's buckets and torch.compile's graphs hold the old parameters."""
        if self.memory_format == torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if self.compile_model else self.model
        self.train_forward = self._parallel(self.model)

    def _parallel(self, model: nn.Module) -> nn.Module:
        if not self.world.active:
            return self.forward
        wrapped = data_parallel(model, self.device)
        return torch.compile(wrapped) if self.compile_model else wrapped

    # ------------------------------------------------------------------ training

    def fit(self) -> TrainState:
        if self.world.is_main:
            self.metrics.truncate(self.state.epoch)
        self.clock.written()
        with self.signals:
            for epoch in range(self.state.epoch, self.epochs):
                self.fit_epoch(epoch)
        return self.state

    def fit_epoch(self, epoch: int) -> None:
        partial, self.resume_progress = self.resume_progress, None
        started = time.perf_counter() - (partial["time_s"] if partial else 0.0)
        lr = self.optimizer.param_groups[0]["lr"]
        if partial is None and self.pruning.begin_epoch(epoch):  # parameters changed
            self.rebuild_wrappers()
        train = self.train_epoch(epoch, started, partial)
        pruning = self.pruning.epoch_done(epoch + 1)
        self.lr_scheduler.step()
        val = evaluate(self.forward, self.data.val, self.device, self.amp_dtype)
        self.state.epoch = epoch + 1
        self.state.train_time_s += time.perf_counter() - started
        record = {
            "epoch": epoch + 1, "step": self.state.step, "lr": lr,
            "train_loss": train["loss"], "train_top1": train["top1"],
            **{f"val_{k}": v for k, v in val.items()},
            "target_sparsity": self.pruning.target_sparsity,
            "achieved_sparsity": self.pruning.achieved_sparsity(),
            **pruning,
            "epoch_time_s": round(time.perf_counter() - started, 3),
            # the network trained this epoch (smaller once channels left it): MACs, parameters
            **network_size(self.model, self.data.input_shape),
        }
        if self.world.is_main:
            self.metrics.append(record)
            self.tracker.log_epoch(epoch + 1, self.state.step, record,
                                   self.pruning.layer_sparsity() if self.tracker.active else {})
        log.info("epoch %d/%d  loss %.4f  val top1 %.4f  sparsity %.3f (target %.3f)  %.1fs%s",
                 epoch + 1, self.epochs, train["loss"], val["top1"],
                 record["achieved_sparsity"], record["target_sparsity"],
                 record["epoch_time_s"], _extra(pruning))
        self.write_checkpoint(epoch)
        signum = self.agreed_signal()  # arrived in the last step, evaluation or the write
        if signum is not None:
            self.stop(signum)

    def train_epoch(self, epoch: int, started: float | None = None,
                    partial: dict | None = None) -> dict[str, float]:
        """One pass over the training loader; `partial`: the accumulators of a mid-epoch
        checkpoint, whose loader state already skips the batches it had done."""
        self.model.train()
        started = time.perf_counter() if started is None else started
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = done = 0
        if partial is not None:  # the same float32 and integer sums as when it was written
            loss_sum.fill_(partial["loss_sum"])
            correct.fill_(partial["correct"])
            seen, done = partial["seen"], partial["batch"]
        batches = len(self.data.train)
        bar = tqdm(self.data.train, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                   leave=False, dynamic_ncols=True, initial=done, total=batches,
                   disable=None if self.progress and self.world.is_main else True)
        for x, y in bar:
            x, y = self.to_device(x, y)
            loss, logits = self.train_step(x, y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
            done += 1
            if self.tracker.active and self.state.step % self.log_every_n_steps == 0:
                self.tracker.log_step(self.state.step, {  # a host read: every N steps only
                    "train_step/loss": float(loss),
                    "train_step/lr": self.optimizer.param_groups[0]["lr"]})
            signum = self.after_step(loss, epoch, last=done == batches)
            if done == batches:  # a signal now is acted on at the epoch's end, a moment later
                continue
            if signum is not None or (self.world.is_main and self.clock.due(self.state.step)):
                self.write_checkpoint(epoch, {
                    "batch": done, "loss_sum": loss_sum.item(), "correct": int(correct.item()),
                    "seen": seen, "time_s": time.perf_counter() - started})
            if signum is not None:
                bar.close()
                self.stop(signum)
        bar.close()
        return {"loss": loss_sum.item() / max(1, seen), "top1": correct.item() / max(1, seen)}

    def after_step(self, loss: torch.Tensor, epoch: int, last: bool) -> int | None:
        """Raises on a non-finite loss; returns the stop signal to act on now, if any. One
        process acts on a signal at once; several ranks act on it together, at a sync point."""
        bad = self.finite.observe(loss, self.state.step)
        if bad is not None:
            raise self.diverged(epoch, *bad)
        if self.state.step % SYNC_EVERY and not last:
            return None if self.world.active else self.signals.signum
        bad = self.finite.read()
        signum = self.signals.signum
        if self.world.active:  # every rank stops at the same step, or the others wait forever
            signum_any, bad_any = max_across_ranks([signum or 0, bad is not None], self.device)
            signum = int(signum_any) or None
            if bad_any and bad is None:
                bad = (self.state.step, float("nan"))  # seen on another rank
        if bad is not None:
            raise self.diverged(epoch, *bad)
        return signum

    def agreed_signal(self) -> int | None:
        signum = self.signals.signum
        if self.world.active:
            signum = int(max_across_ranks([signum or 0], self.device)[0]) or None
        return signum

    def diverged(self, epoch: int, step: int, loss: float | None) -> PdpruneError:
        """The one line for a run whose loss (None: weights) stopped being finite."""
        what = "non-finite weights" if loss is None else f"non-finite loss {loss}"
        clip = (f"lower trainer.grad_clip_norm ({self.grad_clip_norm})" if self.grad_clip_norm
                else "set trainer.grad_clip_norm (e.g. 1.0)")
        kept = (f"{CHECKPOINT} from step {self.saved_step} is kept" if self.saved_step is not None
                else "no checkpoint was written")
        lr = self.config.get("optim", {}).get("lr")  # what the user sets, not today's schedule
        lr = self.optimizer.param_groups[0]["lr"] if lr is None else lr
        return PdpruneError(f"training diverged: {what} at epoch {epoch + 1}, step {step}; "
                            f"lower optim.lr ({lr}) or {clip}; {kept}")

    def stop(self, signum: int):
        """After the checkpoint: a handler that was there before ours runs (submitit requeues
        the job and exits); otherwise the run ends with Preempted."""
        self.signals.hand_on()
        raise Preempted(signum, self.state.step, self.run_dir, self.world.rank)

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch already on the device; no host synchronisation.
        Returns the detached loss and logits."""
        self.pruning.before_step(self.state.step)
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
        self.pruning.after_backward()
        if self.grad_clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.optimizer.step()
        self.state.step += 1
        return loss.detach(), logits.detach()

    def write_checkpoint(self, epoch: int, progress: dict | None = None) -> None:
        """The checkpoint (rank 0), never with non-finite weights: the last good one stays.
        `progress`: how far into epoch `epoch` (None: at its end)."""
        if not self.world.is_main:
            return
        bad = self.finite.read()
        if bad is not None:
            raise self.diverged(epoch, *bad)
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise self.diverged(epoch, self.state.step, None)
        self.epoch_progress = progress
        self.save_checkpoint()
        self.saved_step = self.state.step
        self.clock.written()

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT, {
            "state": vars(self.state).copy(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "pruner": self.pruning.state_dict(),
            "train_loader": self.data.train.state_dict(),
            "rng": rng_states(),
            "config": self.config,
            "epoch_progress": self.epoch_progress,  # None, or how far into the epoch
        })

    def load_checkpoint(self, payload: dict) -> None:
        """Continue from a checkpoint's payload; one line when it does not fit this run."""
        if self.world.is_main:  # a checkpoint write that died before its rename
            temporary(self.run_dir / CHECKPOINT).unlink(missing_ok=True)
        try:
            self._load_checkpoint(payload)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            raise unfit_checkpoint(self.config, self.run_dir, exc) from None

    def _load_checkpoint(self, payload: dict) -> None:
        # the pruner first: layer pruning restores the architecture the weights belong to
        self.pruning.load_state_dict(payload["pruner"])
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.lr_scheduler.load_state_dict(payload["lr_scheduler"])
        self.data.train.load_state_dict(payload["train_loader"])
        restore_rng_states(payload["rng"])
        self.state = TrainState(**payload["state"])
        self.resume_progress = payload.get("epoch_progress")  # absent before mid-epoch checkpoints
        self.saved_step = self.state.step


def max_across_ranks(values: list, device: torch.device) -> list[float]:
    """Each value's maximum over the ranks (one small all-reduce)."""
    flags = torch.tensor([float(v) for v in values], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.tolist()


def _extra(fields: dict) -> str:
    """What a pruner added to an epoch's record (e.g. EPI), for the log line."""
    return "".join(f"  {k} {v:.4f}" if isinstance(v, float) else f"  {k} {'-' if v is None else v}"
                   for k, v in fields.items())
