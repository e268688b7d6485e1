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
from ..signals import SIGNALS

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


def resume_requeued(cfg, run_dir: Path) -> None:
    """A submitit job started again in its own folder (requeued after a preemption signal, or by
    SLURM) continues from the checkpoint there: set trainer.resume, unless the user did."""
    if cfg.trainer.get("resume") or not os.environ.get("SUBMITIT_FOLDER"):
        return
    if (Path(run_dir) / CHECKPOINT).is_file():
        cfg.trainer.resume = str(run_dir)
