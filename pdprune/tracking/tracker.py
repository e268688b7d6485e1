"""The loggers of one run, called together. A logger that fails (a locked store, a full disk,
a network) warns once and is off for the rest of the run: the run itself and its own files
(metrics.jsonl, summary.json, the exports) go on. What each logger needs to continue the same
run after a resume (e.g. MLflow's run id) is kept in <run>/tracking.json."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ..errors import PdpruneError, Preempted
from ..files import write_text
from .base import RunLogger
from .context import RunContext, numbers

log = logging.getLogger("pdprune")

STATE_FILE = "tracking.json"
# what a run's loggers get as artifacts: its own files, if written
RUN_FILES = ("summary.json", "metrics.jsonl", "metrics.csv", ".hydra/config.yaml",
             ".hydra/hydra.yaml", ".hydra/overrides.yaml")


def build_tracker(loggers: Mapping) -> Tracker:
    """Every logger of the `logger` config group, by its `_target_`; one line when a backend
    is not installed."""
    built = {}
    for name, node in (loggers or {}).items():
        try:
            built[name] = instantiate(node)
        except InstantiationException as exc:
            if isinstance(exc.__cause__, PdpruneError):
                raise exc.__cause__ from None
            raise
    return Tracker(built)


class Tracker:
    def __init__(self, loggers: dict[str, RunLogger] | None = None):
        self.loggers = dict(loggers or {})
        self.context: RunContext | None = None

    @property
    def active(self) -> bool:
        return bool(self.loggers)

    @contextlib.contextmanager
    def running(self, context: RunContext) -> Iterator[Tracker]:
        """start() now; finish() when the block ends: FINISHED, KILLED (interrupted or
        preempted: a resume continues the run) or FAILED with the error's line."""
        self.start(context)
        try:
            yield self
        except (KeyboardInterrupt, Preempted):
            self.finish("KILLED", None)
            raise
        except BaseException as exc:
            self.finish("FAILED", str(exc).strip().splitlines()[-1:][0] if str(exc).strip()
                        else type(exc).__name__)
            raise
        self.finish("FINISHED", None)

    def start(self, context: RunContext) -> None:
        self.context = context
        if not self.active:
            return
        state_file = context.run_dir / STATE_FILE
        previous = json.loads(state_file.read_text()) \
            if context.resumed and state_file.exists() else {}
        states = {name: self._call(name, "start", context, previous.get(name, {}))
                  for name in list(self.loggers)}
        states = {name: s for name, s in states.items() if name in self.loggers and s}
        if states:
            write_text(state_file, json.dumps(states, indent=1) + "\n")

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self._each("log_step", step, values)

    def log_epoch(self, epoch: int, step: int, record: dict,
                  layer_sparsity: dict[str, float]) -> None:
        values = {**numbers(record),
                  **{f"layer_sparsity/{name}": v for name, v in layer_sparsity.items()}}
        values.pop("epoch", None), values.pop("step", None)  # the logger's own axes
        self._each("log_epoch", epoch, step, values)

    def log_summary(self, summary: dict) -> None:
        if not self.active:
            return
        run_dir = self.context.run_dir
        files = [run_dir / f for f in RUN_FILES if (run_dir / f).is_file()]
        images = self._plots(summary) if any(lg.images for lg in self.loggers.values()) else []
        metrics = numbers({k: v for k, v in summary.items() if k != "layers"})
        self._each("log_summary", summary, metrics, files, images)

    def finish(self, status: str, error: str | None) -> None:
        self._each("finish", status, error)

    def _plots(self, summary: dict) -> list[Path]:
        from .plots import run_plots
        try:
            return run_plots(self.context.run_dir, summary)
        except ImportError:
            log.warning("loggers: no plots (matplotlib is not installed: pip install -e "
                        "\".[plots]\")")
            return []

    def _each(self, hook: str, *args) -> None:
        for name in list(self.loggers):
            self._call(name, hook, *args)

    def _call(self, name: str, hook: str, *args):
        try:
            return getattr(self.loggers[name], hook)(*args)
        except Exception as exc:  # a backend's trouble, never the run's
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("logger %s failed in %s (%s): it is off for the rest of this run; the "
                        "run's own files are not affected", name, hook, detail)
            self.loggers.pop(name, None)
            return None
