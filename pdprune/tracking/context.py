"""What a logger needs to know about the run it reports: its folder, config, Hydra's choices
and overrides, the sweep it belongs to, and where a resumed run starts again."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..config.flat import flatten

GROUPS = ("model", "dataset", "method", "granularity", "schedule")


@dataclass
class RunContext:
    run_dir: Path
    config: dict  # the resolved composed config
    choices: dict[str, str] = field(default_factory=dict)  # Hydra's config-group choices
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides
    sweep_dir: Path | None = None  # the multirun folder this job belongs to; None: one run
    resumed: bool = False
    start_step: int = 0  # optimizer steps done before this process started (resume)

    @classmethod
    def current(cls, config: dict, run_dir: Path) -> RunContext:
        """From the Hydra job running now; from `config` alone in library use."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls(run_dir, config)
        hydra = HydraConfig.get()
        choices = {k: str(v) for k, v in hydra.runtime.choices.items()
                   if not k.startswith("hydra/") and v is not None}
        sweep = Path(hydra.sweep.dir).resolve() if hydra.mode == RunMode.MULTIRUN else None
        return cls(run_dir, config, choices, list(hydra.overrides.task), sweep)

    @property
    def name(self) -> str:
        """The run folder under its sweep (`3_method=gmp,...`), or its own name."""
        folder = self.run_dir.resolve()
        if self.sweep_dir is not None and folder.is_relative_to(self.sweep_dir):
            return str(folder.relative_to(self.sweep_dir))
        return folder.name

    @property
    def sweep_name(self) -> str | None:
        """The sweep folder, relative to the working directory when under it."""
        if self.sweep_dir is None:
            return None
        cwd = Path.cwd().resolve()
        return str(self.sweep_dir.relative_to(cwd) if self.sweep_dir.is_relative_to(cwd)
                   else self.sweep_dir)

    def labels(self) -> dict[str, str]:
        """model, dataset, method, granularity, schedule: the choices, else the config's names."""
        return {g: self.choices.get(g) or str((self.config.get(g) or {}).get("name", ""))
                for g in GROUPS}

    def tags(self) -> dict[str, str]:
        tags = {f"pdprune.{k}": v for k, v in self.labels().items()}
        tags["pdprune.run_dir"] = str(self.run_dir.resolve())
        tags["pdprune.run_name"] = self.name
        if self.sweep_dir is not None:
            tags["pdprune.sweep_dir"] = str(self.sweep_dir)
        commit = git_commit()
        if commit:
            tags["pdprune.git_commit"] = commit
        return tags

    def params(self) -> dict[str, str]:
        """The composed config as dotted keys (loggers left out), and Hydra's choices."""
        flat = {k: v for k, v in flatten(self.config).items() if not k.startswith("logger.")}
        return {**{k: str(v) for k, v in flat.items()},
                **{f"choice.{k}": v for k, v in self.choices.items()}}


def numbers(tree: dict, sep: str = "/") -> dict[str, float]:
    """The numeric leaves of nested dicts (booleans and lists left out), as `a/b/c` keys."""
    return {k: float(v) for k, v in flatten(tree, sep=sep).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@functools.cache
def git_commit() -> str | None:
    """The commit of pdprune's own source, when it runs from a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
