"""`prune-train`: Hydra entry point. Nothing here but command line -> config -> run(), and one
line for every way that can fail (run_folder.py decides what happens to the folder)."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from .config import CONFIG_DIR
from .config.compose_errors import describe
from .config.preflight import check, with_resume
from .errors import PdpruneError, Preempted
from .files import write_text
from .report import ERROR_FILE
from .run_folder import Plan, clear_outputs, finish_sweep, plan_output, remove_if_fresh, resumes

log = logging.getLogger("pdprune")

_plan: Plan | None = None  # set by main(), read by hydra_job() in the same process


def fail(message: str, code: int = 2) -> None:
    print(f"prune-train: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def record_error(run_dir: Path, text: str) -> None:
    """error.txt beside the run, written whole or not at all (the folder may be full)."""
    with contextlib.suppress(OSError):
        write_text(run_dir / ERROR_FILE, text)


def job_failed(run_dir: Path, message: str, code: int = 2) -> None:
    """End a single run with one line, leaving no folder if it made one and wrote nothing of
    its own; a sweep's job records the error and returns (main() lists it at the end)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        record_error(run_dir, message + "\n")
        log.error("job failed: %s", message)
        return
    if not remove_if_fresh(_plan, run_dir, HydraConfig.get().job.name):
        record_error(run_dir, message + "\n")
    fail(message, code)


def write_failure(exc: Exception, run_dir: Path) -> str | None:
    """One line for a file that could not be written or read (a full disk, permissions), or
    None when `exc` is something else (a bug)."""
    if isinstance(exc, OSError):
        if exc.filename and exc.strerror:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
            return f"{'cannot write ' * full}{exc.filename}: {exc.strerror}"
        return str(exc) or type(exc).__name__
    text = str(exc)
    # a full disk under torch.save's zip writer (a short write): not an OSError
    if "No space left on device" in text or "unexpected pos" in text:
        first = next((line for line in text.splitlines() if line.strip()), text)
        return f"cannot write into {run_dir} (is the disk full?): {first.strip()}"
    return None


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def hydra_job(cfg: DictConfig) -> float | None:
    from .distributed import stop
    from .run import run  # torch and friends load only once the config is known to be good
    from .train.preempt import resume_requeued

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    labels = {group: str(hydra_cfg.runtime.choices[group])
              for group in ("model", "dataset", "method", "granularity", "schedule")}
    (run_dir / ERROR_FILE).unlink(missing_ok=True)  # a resumed run starts clean
    resume_requeued(cfg, run_dir)  # a requeued SLURM job continues from its checkpoint
    if cfg.trainer.overwrite and not resumes(cfg.trainer.resume, run_dir):
        clear_outputs(run_dir)  # main() refused a reused folder without trainer.overwrite
    failed = None  # a file that could not be written: one line, once the writer is gone
    summary = None
    try:
        summary = run(cfg, run_dir, labels)
    except PdpruneError as exc:
        job_failed(run_dir, str(exc))
    except KeyboardInterrupt:  # outside training (set-up, export) or a second Ctrl-C
        done = run_dir / "checkpoints" / "last.pt"
        hint = f"resume with: prune-train trainer.resume={run_dir}" if done.exists() \
            else "no checkpoint had been written, nothing to resume"
        fail(f"interrupted; {hint}", code=130)
    except Preempted as exc:  # a signal in training: its checkpoint is written
        fail(exc.line(run_dir), code=exc.code)
    except Exception as exc:
        failed = write_failure(exc, run_dir)
        if failed is None:  # a bug: keep the traceback beside the run
            record_error(run_dir, traceback.format_exc())
            if hydra_cfg.mode != RunMode.MULTIRUN:
                raise
            log.exception("job failed")  # the sweep goes on; main() lists it at the end
    finally:
        stop()  # leave the process group (data-parallel runs)
    if failed is not None:
        gc.collect()  # a failed torch.save holds its partial file (and the space) until freed
        job_failed(run_dir, failed)
        return None
    # what a tuning sweep maximises (hparams_search/); None: the job failed, a failed trial
    return (summary or {}).get("accuracy", {}).get("val", {}).get("top1")


def quiet_rank(argv: list[str]) -> list[str]:
    """Under torchrun, ranks other than 0 write nothing: Hydra's folder and log go to a
    temporary folder (rank 0 broadcasts the real run folder), and their log is off."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return argv
    scratch = Path(tempfile.gettempdir()) / f"pdprune-rank{rank}-{os.getpid()}"
    return [*argv, f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}",
            "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def main() -> None:
    global _plan
    argv = sys.argv[1:]
    if "" not in sys.path and os.getcwd() not in sys.path:  # model=custom model._target_=
        sys.path.insert(0, os.getcwd())  # my_models.Net: the user's folder, as Hydra apps do
    try:
        argv = with_resume(argv)
        check(argv)
        _plan, argv = plan_output(argv)
    except PdpruneError as exc:
        fail(str(exc))
    sys.argv = [sys.argv[0], *quiet_rank(argv)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own errors reach the handlers below
    try:
        hydra_job()
    except OSError as exc:  # Hydra could not make or write the folder (our code's are caught)
        where = f"{_plan.key}={_plan.folder}: " if _plan else ""
        fail(f"{where}cannot write the run folder: {exc.strerror or exc} ({exc.filename})")
    except (HydraException, OmegaConfBaseException) as exc:
        fail(describe(exc))
    if _plan is not None and _plan.sweep:
        finish_sweep(_plan)


if __name__ == "__main__":
    main()
