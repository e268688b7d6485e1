"""One tracking backend: the hooks a run calls, each with plain Python numbers. A backend
that raises is switched off by the Tracker (tracker.py); the run's own files never depend on it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from ..errors import PdpruneError
from .context import RunContext


class RunLogger:
    images = False  # wants the run's plots (tracker.py draws them once for every logger)

    def start(self, context: RunContext, previous: dict) -> dict:
        """Before training; `previous`: what this logger returned when the run started before
        (resume). Returns what it needs to continue the same run later (e.g. a run id)."""
        return {}

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Every trainer.log_every_n_steps optimizer steps (`step` steps done)."""

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        """At the end of epoch `epoch` (1-based), `step` optimizer steps done."""

    def log_summary(self, summary: dict, metrics: dict[str, float], files: list[Path],
                    images: list[Path]) -> None:
        """Once the run is exported: the summary, its numbers, the run's files, its plots."""

    def finish(self, status: str, error: str | None) -> None:
        """FINISHED, FAILED or KILLED (interrupted, resumable); `error` says why it failed."""


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import an optional backend, or one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PdpruneError(f"logger={extra} needs {package}, which is not installed here: "
                           f"pip install -e \".[{extra}]\" (or pip install {package})") from None
