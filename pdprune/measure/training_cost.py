"""What training cost, two ways: multiply-accumulates of the network each epoch actually trained
(after channel pruning, the smaller one), forward and backward (3x the forward MACs) over the
epoch's samples; and the wall-clock seconds the epochs took, against the dense run's time
estimated from the run's own dense epochs (or a short timed calibration when it had none). EPI's
claim is about this: the accuracy of the best fixed pruning epoch at a fraction of the cost."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .cost import layer_macs

BACKWARD_FACTOR = 3  # forward + backward (gradients w.r.t. inputs and weights) ~ 3 forwards


def network_size(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """{'macs': forward MACs per sample, 'nonzero_macs': those of its non-zero weights (what a
    sparse kernel would run), 'params': parameters} of the layers physically present in `model`
    (a masked channel still counts in 'macs'; a removed one does not). One eval-mode forward of
    a zero sample without gradients: training state (BN statistics, RNG) is left alone."""
    device = next(model.parameters()).device
    layers = layer_macs(model, input_shape, device).values()
    return {"macs": sum(dense for dense, _ in layers),
            "nonzero_macs": sum(nonzero for _, nonzero in layers),
            "params": sum(p.numel() for p in model.parameters())}


def training_cost(epoch_macs: list[int], dense_macs: int, samples_per_epoch: int,
                  epoch_params: list[int] | None = None,
                  epoch_nonzero_macs: list[int] | None = None) -> dict:
    """Train MACs spent and the dense equivalent; `dense_epochs`: epochs before any pruning.
    `epoch_nonzero_macs`: forward MACs of each epoch's non-zero weights at its end: the
    training cost a sparse kernel would run (SET / RigL count their cost so); the gradient
    steps RigL and GraNet take densely are not in it."""
    dense_epochs = next((i for i, m in enumerate(epoch_macs) if m != dense_macs),
                        len(epoch_macs))
    spent = BACKWARD_FACTOR * samples_per_epoch * sum(epoch_macs)
    dense = BACKWARD_FACTOR * samples_per_epoch * dense_macs * len(epoch_macs)
    sparse = {}
    if epoch_nonzero_macs is not None:
        nonzero = BACKWARD_FACTOR * samples_per_epoch * sum(epoch_nonzero_macs)
        sparse = {"nonzero_forward_macs_per_epoch": epoch_nonzero_macs,
                  "nonzero_train_macs": nonzero, "nonzero_vs_dense": nonzero / max(1, dense)}
    return {"dense_epochs": dense_epochs, "forward_macs_per_epoch": epoch_macs,
            **({"params_per_epoch": epoch_params} if epoch_params is not None else {}),
            "samples_per_epoch": samples_per_epoch, "train_macs": spent,
            "dense_train_macs": dense, "vs_dense": spent / max(1, dense), **sparse}


# ------------------------------------------------------------------ wall-clock seconds

def measured_time(epoch_times: Sequence[float], dense: Sequence[bool],
                  calibrate: Callable[[], dict]) -> dict:
    """Measured seconds against the dense run's. `dense[i]`: epoch i trained with nothing pruned
    yet. The dense epoch time is the median of those epochs; with none, `calibrate()` is called
    ({'epoch_time_s': ..., and how it was timed}). The estimate of the dense run is that epoch
    time for as many epochs as the run had; the run's time is the sum of its epochs' (each
    with its validation, as the dense epochs are)."""
    if len(dense) != len(epoch_times):
        raise ValueError(f"{len(epoch_times)} epoch times but {len(dense)} dense flags")
    timed = [t for t, d in zip(epoch_times, dense, strict=True) if d]
    train_time_s = sum(epoch_times)
    out = {"epoch_time_s": list(epoch_times), "train_time_s": round(train_time_s, 3)}
    if timed:
        per_epoch = statistics.median(timed)
        out.update(dense_time_from="dense_epochs", dense_epochs_timed=len(timed))
    else:
        calibration = calibrate()
        per_epoch = calibration["epoch_time_s"]
        out.update(dense_time_from="calibration", dense_epochs_timed=0, calibration=calibration)
    dense_run = per_epoch * len(epoch_times)
    out.update(dense_epoch_time_s=round(per_epoch, 4), dense_train_time_s=round(dense_run, 3),
               measured_vs_dense=train_time_s / dense_run if dense_run > 0 else None)
    return out


def calibrate_dense_epoch(build: Callable[[], nn.Module],
                          batch: tuple[torch.Tensor, torch.Tensor],
                          make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                          step: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                          steps_per_epoch: int,
                          validate: Callable[[nn.Module], object] | None = None,
                          steps: int = 5, warmup: int = 2) -> dict:
    """A dense epoch's seconds, timed briefly (for a run that had no dense epoch): a fresh
    `build()` trains `warmup` untimed then `steps` timed steps on one real batch (already on the
    device); the median step times `steps_per_epoch`, plus one timed `validate(model)` pass as
    every epoch of the run has. `step(model, x, y)` returns the loss. Not timed: loading data.
    The global RNG states are kept as they were: a calibration changes nothing of the run's."""
    x, y = batch
    cuda = x.device.type == "cuda"
    with torch.random.fork_rng(devices=[x.device] if cuda else []):
        model = build()
        step_s = time_steps(model, batch, make_optimizer(model), step, steps, warmup)
        validation_s = 0.0
        if validate is not None:
            started = time.perf_counter()
            validate(model)  # ends with a host sync (it returns numbers)
            validation_s = time.perf_counter() - started
    return {"epoch_time_s": step_s * steps_per_epoch + validation_s,
            "step_time_s": round(step_s, 5), "validation_s": round(validation_s, 4),
            "steps": steps, "warmup": warmup, "steps_per_epoch": steps_per_epoch,
            "batch_size": len(y)}


def time_steps(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               optimizer: torch.optim.Optimizer,
               step: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
               steps: int = 5, warmup: int = 2) -> float:
    """Median seconds of a training step (forward, backward, optimizer step) of `model` on one
    batch, over `steps` timed steps after `warmup` untimed ones (CUDA-synchronised)."""
    x, y = batch
    cuda = x.device.type == "cuda"
    model.train()
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize(x.device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step(model, x, y).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(x.device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)
