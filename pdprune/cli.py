"""`prune-train`: Hydra entry point. Nothing here but command line -> config -> run()."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import CONFIG_DIR
from .config.preflight import check, with_resume
from .errors import PdpruneError
from .report import ERROR_FILE

log = logging.getLogger("pdprune")


def fail(message: str, code: int = 2) -> None:
    print(f"prune-train: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class JobFailed(Exception):
    """One job of a sweep failed: Hydra records it and goes on with the other jobs, then
    exits non-zero at the end (a SystemExit would end the whole sweep)."""


def job_failed(run_dir: Path, message: str, code: int = 2) -> None:
    """Record the failure in the run folder; end a single run, or only this job of a sweep."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).write_text(message + "\n")
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        log.error("job failed: %s", message)
        raise JobFailed(f"{run_dir}: {message}") from None
    fail(message, code)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def hydra_job(cfg: DictConfig) -> None:
    from .distributed import stop
    from .run import run  # torch and friends load only once the config is known to be good

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    labels = {group: str(hydra_cfg.runtime.choices[group])
              for group in ("model", "dataset", "method", "granularity", "schedule")}
    (run_dir / ERROR_FILE).unlink(missing_ok=True)  # a resumed run starts clean
    try:
        run(cfg, run_dir, labels)
    except PdpruneError as exc:
        log.error("error: %s", exc)
        job_failed(run_dir, str(exc))
    except KeyboardInterrupt:
        done = run_dir / "checkpoints" / "last.pt"
        hint = f"resume with: prune-train trainer.resume={run_dir}" if done.exists() \
            else "no epoch had finished, nothing to resume"
        fail(f"interrupted; {hint}", code=130)
    except Exception:  # a bug or a resource error: keep the traceback beside the run
        (run_dir / ERROR_FILE).write_text(traceback.format_exc())
        raise
    finally:
        stop()  # leave the process group (data-parallel runs)


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
    argv = sys.argv[1:]
    try:
        argv = with_resume(argv)
        check(argv)
    except PdpruneError as exc:
        fail(str(exc))
    sys.argv = [sys.argv[0], *quiet_rank(argv)]
    hydra_job()


if __name__ == "__main__":
    main()
