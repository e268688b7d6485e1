"""Every exception pdprune raises on purpose: each one prints as a single line, never as a
traceback. No torch here: the config checks import this before anything heavy loads."""

from __future__ import annotations

import signal
from pathlib import Path


class PdpruneError(Exception):
    """A problem the user can fix (bad input, missing file); printed as one line."""


class ConfigError(PdpruneError):
    """A bad config value: names the key, the value and what is wrong with it."""

    def __init__(self, key: str, value: object, reason: str):
        self.key, self.value, self.reason = key, value, reason
        shown = "" if value is None and "=" in key else f"={value}"
        super().__init__(f"{key}{shown}: {reason}")


class Preempted(Exception):
    """A stop signal arrived (train.preempt.StopSignals); the checkpoint at `step` is written
    (rank 0). Exit 128 + signal. Not a PdpruneError: the run stopped, it did not fail."""

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
