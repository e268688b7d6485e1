"""`prune-train`: Hydra entry point. Nothing here but command line -> config -> run()."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config import CONFIG_DIR
from .config.preflight import check, with_resume
from .errors import PdpruneError

log = logging.getLogger("pdprune")


def fail(message: str, code: int = 2) -> None:
    print(f"prune-train: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def hydra_job(cfg: DictConfig) -> None:
    from .run import run  # torch and friends load only once the config is known to be good

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    labels = {group: str(hydra_cfg.runtime.choices[group])
              for group in ("model", "dataset", "method", "granularity", "schedule")}
    try:
        run(cfg, run_dir, labels)
    except PdpruneError as exc:
        log.error("error: %s", exc)
        fail(str(exc))
    except KeyboardInterrupt:
        done = run_dir / "checkpoints" / "last.pt"
        hint = f"resume with: prune-train trainer.resume={run_dir}" if done.exists() \
            else "no epoch had finished, nothing to resume"
        fail(f"interrupted; {hint}", code=130)


def main() -> None:
    argv = sys.argv[1:]
    try:
        argv = with_resume(argv)
        check(argv)
    except PdpruneError as exc:
        fail(str(exc))
    sys.argv = [sys.argv[0], *argv]
    hydra_job()


if __name__ == "__main__":
    main()
