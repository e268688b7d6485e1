"""The folder a command writes into: main() resolves the folder Hydra is about to make and pins
it on the command line (its default name has the clock in it), noting which of its folders do
not exist yet. A run that fails before writing anything of its own leaves no folder; reusing a
folder that holds another run's results needs trainer.overwrite=true; a sweep keeps every failed
job's folder with its error.txt and ends with one line per failed job."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import CONFIG_DIR
from .config.compose_errors import describe
from .config.preflight import job_overrides
from .errors import ConfigError, PdpruneError
from .report import ERROR_FILE, error_line, job_order

# A folder holding any of these holds a run's results: reusing it needs trainer.overwrite=true.
RESULTS = ("metrics.jsonl", "summary.json", "checkpoints", "model.safetensors")
# What trainer.overwrite=true removes when the new run starts: everything a run writes except
# Hydra's .hydra/ (rewritten for the new run) and its log (appended to); other files stay.
RUN_OUTPUTS = (*RESULTS, "model.pt2", "model.onnx", "compact.safetensors", "compact.pt2",
               "compact.onnx", "teacher", ERROR_FILE)


@dataclass
class Plan:
    """The output folder of this command, as main() found it before Hydra made it."""
    key: str  # hydra.run.dir, or hydra.sweep.dir for a sweep
    folder: Path  # absolute
    made: list[Path]  # the folder and its parents that did not exist yet, deepest first
    errors: dict[Path, tuple] = field(default_factory=dict)  # a sweep's error.txt files before

    @property
    def sweep(self) -> bool:
        return self.key == "hydra.sweep.dir"


def remove_if_fresh(plan: Plan | None, run_dir: Path, job_name: str) -> bool:
    """Remove the run folder (and the empty parents made with it) when this command made it
    and it holds only Hydra's files; True when removed."""
    if plan is None or plan.sweep or not plan.made or plan.made[0] != run_dir:
        return False
    hydra_files = {".hydra", f"{job_name}.log", ERROR_FILE}
    if any(p.name not in hydra_files for p in run_dir.iterdir()):
        return False
    for handler in logging.root.handlers[:]:  # Hydra's job log, open in that folder
        if isinstance(handler, logging.FileHandler) and \
                Path(handler.baseFilename).parent == run_dir:
            handler.close()
            logging.root.removeHandler(handler)
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in plan.made[1:]:
        with contextlib.suppress(OSError):  # not empty: another run's folder is in it
            parent.rmdir()
    return True


def results_in(folder: Path) -> list[str]:
    """Which of RESULTS `folder` holds (an empty metrics.jsonl or checkpoints/ counts not)."""
    found = []
    for name in RESULTS:
        path = folder / name
        if path.is_dir() and any(path.iterdir()) or path.is_file() and \
                (name != "metrics.jsonl" or path.stat().st_size > 0):
            found.append(name)
    return found


def resumes(resume: str | None, folder: Path) -> bool:
    """trainer.resume names this folder (or its checkpoint)."""
    if not resume:
        return False
    path = Path(resume).expanduser()
    if path.is_file():
        path = path.parent.parent  # <run>/checkpoints/last.pt
    return path.resolve() == folder.resolve()


def clear_outputs(folder: Path) -> None:
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _override_value(text: str) -> str:
    return text if re.fullmatch(r"[\w./~:@%+-]+", text) else "'" + text.replace("'", "\\'") + "'"


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def plan_output(argv: list[str]) -> tuple[Plan | None, list[str]]:
    """Resolve the folder Hydra is about to make (hydra.run.dir, or a sweep's hydra.sweep.dir)
    and pin it on the command line; refuse one that cannot be written, or that holds another
    run's results (a single run, unless trainer.resume names it or trainer.overwrite=true)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None, argv  # quiet_rank sends the other ranks to a scratch folder
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3",
                               job_name="prune-train"):
        jobs = job_overrides(argv)
        if jobs is None:  # --cfg, --help, ...: nothing is written
            return None, argv
        key = "hydra.sweep.dir" if get_args_parser().parse_args(argv).multirun \
            else "hydra.run.dir"
        try:
            cfg = compose("train", overrides=jobs[0] if jobs else [], return_hydra_config=True)
            shown = str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))
        except (HydraException, OmegaConfBaseException) as exc:
            raise PdpruneError(f"{key}: {describe(exc)}") from None
    folder = Path(os.path.abspath(shown))
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(key, shown, f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, shown, f"cannot write into {existing}")
    plan = Plan(key, folder, made)
    pinned = [*(a for a in argv if a.lstrip("+~").split("=", 1)[0] != key),
              f"{key}={_override_value(shown)}"]
    if plan.sweep:  # a sweep's jobs replace their folders' files (scripts rerun into one dir)
        plan.errors = {f: _stamp(f) for f in folder.rglob(ERROR_FILE)}
        return plan, pinned
    found = [] if resumes(cfg.trainer.resume, folder) else results_in(folder)
    if found and not cfg.trainer.overwrite:
        raise ConfigError(key, shown, f"holds another run's results ({', '.join(found)}); "
                          "choose another folder, continue that run with trainer.resume, or "
                          "replace its results with trainer.overwrite=true")
    return plan, pinned


def finish_sweep(plan: Plan) -> None:
    """One line per job of this sweep that failed (an error.txt it wrote), then exit non-zero:
    2 when every failure was the user's to fix, 1 when one was a bug (a traceback)."""
    written = sorted(plan.folder.rglob(ERROR_FILE), key=lambda f: job_order(f.parent)) \
        if plan.folder.is_dir() else []
    failed = [f for f in written if plan.errors.get(f) != _stamp(f)]
    bugs = False
    for f in failed:
        text = f.read_text()
        bugs |= text.startswith("Traceback")
        shown = os.path.relpath(f.parent) if f.parent.is_relative_to(Path.cwd()) else f.parent
        print(f"prune-train: error: job {shown} failed: {error_line(text)}", file=sys.stderr)
    if failed:
        sys.exit(1 if bugs else 2)
