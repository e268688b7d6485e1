"""Schedules: real optimizer step -> target sparsity now (docs/methods.md).

The pure ones are functions of the step count; a stateful one (EPI, epi_schedule.py) keeps its
own state and is told about backwards and epoch ends through the same calls, which do nothing
here."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from .early_bird_schedule import EarlyBirdSchedule
from .epi import DEFAULT_TAU
from .epi_schedule import EPISchedule


class PureSchedule:
    """A function of the step: nothing to observe, nothing to save."""

    target: float

    def due(self, step: int) -> bool:
        """Whether pruning has begun by `step`."""
        return self.sparsity_at(step) > 0

    def after_backward(self) -> None:
        pass

    def end_epoch(self, epochs_done: int) -> dict:
        return {}

    def summary(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass(frozen=True)
class PDPSchedule(PureSchedule):
    """Dense for `warmup_epochs`; then r(e) = min(1, eps * (e - warmup + 1)) * target per epoch."""

    target: float
    warmup_epochs: int
    ramp_epochs: int
    steps_per_epoch: int
    eps: float | None = None

    def fraction(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return 0.0
        done = epoch - self.warmup_epochs + 1
        if self.eps is not None:
            return min(1.0, self.eps * done)
        return min(1.0, done / self.ramp_epochs)  # eps = 1 / ramp_epochs, exact at the end

    def sparsity_at(self, step: int) -> float:
        return self.target * self.fraction(step // self.steps_per_epoch)


@dataclass(frozen=True)
class CubicSchedule(PureSchedule):
    """Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for t0 <= t <= t0 + n dt.

    t counts real optimizer steps. The value changes only at t0 + k dt (when masks are
    recomputed); n = floor(span / dt) so the last update is at or before end_epoch.
    Before t0 nothing is pruned.
    """

    target: float
    initial_sparsity: float
    start_step: int
    span_steps: int
    dt: int

    @property
    def updates(self) -> int:
        return self.span_steps // self.dt

    def sparsity_at(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        n = self.updates
        if n == 0:
            return self.target
        k = min((step - self.start_step) // self.dt, n)
        return self.target + (self.initial_sparsity - self.target) * (1 - k / n) ** 3


@dataclass(frozen=True)
class OneShotSchedule(PureSchedule):
    """Zero until `epoch` starts, the target from then on."""

    target: float
    epoch: int
    steps_per_epoch: int

    def due(self, step: int) -> bool:
        return step >= self.epoch * self.steps_per_epoch

    def sparsity_at(self, step: int) -> float:
        return self.target if step >= self.epoch * self.steps_per_epoch else 0.0


Schedule = PDPSchedule | CubicSchedule | OneShotSchedule | EPISchedule | EarlyBirdSchedule


def build_schedule(cfg: DictConfig, steps_per_epoch: int) -> Schedule:
    if cfg.name == "pdp":
        return PDPSchedule(cfg.target, cfg.warmup_epochs, cfg.ramp_epochs, steps_per_epoch, cfg.eps)
    if cfg.name == "cubic":
        return CubicSchedule(cfg.target, cfg.initial_sparsity, cfg.start_epoch * steps_per_epoch,
                             (cfg.end_epoch - cfg.start_epoch) * steps_per_epoch, cfg.dt)
    if cfg.name == "oneshot":
        return OneShotSchedule(cfg.target, cfg.epoch, steps_per_epoch)
    if cfg.name == "epi":  # watches the channel groups once they are known (EPISchedule.watch)
        tau = cfg.tau if cfg.tau is not None else DEFAULT_TAU[cfg.criterion]
        return EPISchedule(cfg.target, steps_per_epoch, cfg.criterion, tau, cfg.window,
                           cfg.patience, cfg.max_epoch, cfg.normalize, cfg.cut)
    if cfg.name == "early_bird":  # watches the channel groups too (docs/methods.md#early-bird)
        return EarlyBirdSchedule(cfg.target, steps_per_epoch, cfg.epsilon, cfg.window, cfg.pairs,
                                 cfg.max_epoch, cfg.cut, cfg.l1, cfg.l1_when_pruned)
    raise ValueError(f"schedule={cfg.name} is not implemented")
