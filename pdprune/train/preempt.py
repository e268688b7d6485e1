"""Preemption: signals that end a run cleanly at a step boundary, mid-epoch checkpoint timing,
and resuming a requeued SLURM job (submitit) from its own folder.

No torch here: the config checks import this before anything heavy loads.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

from ..errors import ConfigError

# SIGUSR2 is submitit's own preemption signal (`--signal=USR2@<signal_delay_s>`): the run writes its
# checkpoint first, then hands the signal to submitit, which requeues the job.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                if hasattr(signal, name))
CHECKPOINT = Path("checkpoints") / "last.pt"  # as train.checkpoint.CHECKPOINT (no torch here)


def checkpoint_interval(value: object) -> tuple[int | None, float | None]:
    """trainer.checkpoint_every: N (optimizer steps), `Nmin` (minutes of training) or null/0
    (only at the end of each epoch). Returns (steps, seconds), at most one of them set."""
    text = "" if value is None else str(value).strip()
    if text in ("", "0", "null", "None"):
        return None, None
    if re.fullmatch(r"\d+", text):
        return int(text), None
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*min", text)
    if match and float(match[1]) > 0:
        return None, float(match[1]) * 60
    raise ConfigError("trainer.checkpoint_every", value, "must be a number of optimizer steps "
                      "(e.g. 500), minutes with `min` (e.g. 10min), or null (epoch ends only)")


class CheckpointClock:
    """When a mid-epoch checkpoint is due: every N steps, or N minutes after the last one."""

    def __init__(self, value: object):
        self.steps, self.seconds = checkpoint_interval(value)
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.steps is not None:
            return step % self.steps == 0
        return self.seconds is not None and time.monotonic() - self.last >= self.seconds

    def written(self) -> None:
        self.last = time.monotonic()


class Preempted(Exception):
    """A stop signal arrived; the checkpoint at `step` is written (rank 0). Exit 128 + signal."""

    def __init__(self, signum: int, step: int, run_dir: Path, rank: int = 0):
        self.signum, self.step, self.run_dir, self.rank = signum, step, Path(run_dir), rank
        self.code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} at step {step}")

    def line(self, run_dir: Path) -> str:
        """The one line for the user; `run_dir` is the folder `trainer.resume` takes."""
        name = signal.Signals(self.signum).name
        if self.rank:  # under torchrun: rank 0 says where to resume
            return f"rank {self.rank}: {name}; rank 0 wrote the checkpoint at step {self.step}"
        if self.run_dir.resolve() != Path(run_dir).resolve():  # e.g. the distillation teacher
            return f"{name}; stopped before this run's first checkpoint, nothing to resume"
        return (f"{name}; checkpoint at step {self.step} written; "
                f"resume with: prune-train trainer.resume={run_dir}")


class StopSignals:
    """While active (a context), SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 only set `signum`: the loop
    finishes the step in flight, writes a checkpoint and raises Preempted. A second SIGINT
    interrupts at once (the user insists). Signals can only be caught in the main thread;
    elsewhere this does nothing."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. SIGINT under `cmd &`
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def hand_on(self) -> None:
        """After the checkpoint: give the signal to a handler that was there before ours
        (submitit's requeues the job and exits); Python's defaults are replaced by Preempted."""
        previous = self.previous.get(self.signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.signum, None)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """In a data-loading worker: Ctrl-C and SLURM's time-limit signals reach every process of
    the job, and a worker killed by one would fail the main process's step before it can write
    its checkpoint. SIGTERM keeps its default: the DataLoader and multiprocessing stop workers
    with it, and a worker that ignored it would hang the process at exit."""
    for signum in SIGNALS:
        if signum != signal.SIGTERM:
            signal.signal(signum, signal.SIG_IGN)


def resume_requeued(cfg, run_dir: Path) -> None:
    """A submitit job started again in its own folder (requeued after a preemption signal, or by
    SLURM) continues from the checkpoint there: set trainer.resume, unless the user did."""
    if cfg.trainer.get("resume") or not os.environ.get("SUBMITIT_FOLDER"):
        return
    if (Path(run_dir) / CHECKPOINT).is_file():
        cfg.trainer.resume = str(run_dir)
