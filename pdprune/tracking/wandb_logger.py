"""Weights & Biases, offline by default: the run is written under <run>/wandb and never needs
the network (`wandb sync <run>/wandb/offline-run-*` uploads it later). Stepped by optimizer
steps; a resumed run continues the same W&B run (its id is kept in tracking.json)."""

from __future__ import annotations

from pathlib import Path

from .base import RunLogger, require
from .context import RunContext


class WandbLogger(RunLogger):
    def __init__(self, mode: str = "offline", project: str = "pdprune",
                 entity: str | None = None, images: bool = True):
        self.wandb = require("wandb", "wandb", "wandb")
        self.mode, self.project, self.entity, self.images = mode, project, entity, images
        self.run = None
        self.last_step = 0

    def start(self, context: RunContext, previous: dict) -> dict:
        labels = context.labels()
        self.run = self.wandb.init(
            project=self.project, entity=self.entity, mode=self.mode, dir=str(context.run_dir),
            name=context.name, group=context.sweep_name, config=context.params(),
            tags=[f"{k}={v}" for k, v in labels.items() if k != "dataset"],
            id=previous.get("id"), resume="allow" if previous.get("id") else None,
            reinit="create_new", settings=self.wandb.Settings(console="off", silent=True))
        return {"id": self.run.id}

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.last_step = step
        self.run.log({**values, "epoch": epoch}, step=step)

    def log_summary(self, summary: dict, metrics: dict[str, float], files: list[Path],
                    images: list[Path]) -> None:
        self.run.summary.update({f"summary/{k}": v for k, v in metrics.items()})
        if images:
            self.run.log({f"plots/{p.stem}": self.wandb.Image(str(p)) for p in images},
                         step=self.last_step)

    def finish(self, status: str, error: str | None) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "FINISHED" else 1)
