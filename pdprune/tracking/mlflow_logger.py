"""MLflow: one run per job (a sweep: one experiment), its params the composed config and Hydra's
choices, metrics stepped (per step: optimizer steps; per epoch: the epoch), and as artifacts
the run's own files (under run/), its plots (plots/) and the exported model (model/). Through
MlflowClient, not the fluent API: a sweep's jobs share one process and its global state."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .base import RunLogger, require
from .context import RunContext

DEFAULT_URI = "sqlite:///mlruns.db"  # in the working directory: `mlflow ui --backend-store-uri`
ONE_RUN_EXPERIMENT = "prune-train"
MAX_PARAM = 6000  # MLflow's limit on a param's value


def tracking_uri(configured: str | None) -> str:
    """The store: configured, else $MLFLOW_TRACKING_URI, else DEFAULT_URI. A relative SQLite
    path is made absolute now, so that a resume from elsewhere finds the same store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


class MlflowLogger(RunLogger):
    images = True

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 log_model: bool = True):
        require("mlflow", "mlflow", "mlflow")
        self.uri, self.experiment_name, self.log_model = tracking_uri, experiment_name, log_model
        self.client = self.run_id = None

    def start(self, context: RunContext, previous: dict) -> dict:
        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=previous.get("tracking_uri")
                                   or tracking_uri(self.uri))
        if previous.get("run_id"):  # a resumed run continues its MLflow run
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return previous
        experiment = self.experiment_name or context.sweep_name or ONE_RUN_EXPERIMENT
        run = self.client.create_run(self._experiment_id(experiment), run_name=context.name,
                                     tags=context.tags())
        self.run_id = run.info.run_id
        params = [Param(k, v[:MAX_PARAM]) for k, v in context.params().items()]
        for first in range(0, len(params), 100):  # MLflow takes 100 params a call
            self.client.log_batch(self.run_id, params=params[first:first + 100])
        hydra_dir = context.run_dir / ".hydra"  # now: a report lists the run while it runs
        if hydra_dir.is_dir():
            self.client.log_artifacts(self.run_id, str(hydra_dir), "run/.hydra")
        return {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri,
                "experiment": experiment}

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # a parallel job of the same sweep made it first
            return self.client.get_experiment_by_name(name).experiment_id

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for first in range(0, len(metrics), 1000):  # MLflow takes 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=metrics[first:first + 1000])

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self._log(values, step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self._log(values, epoch)

    def log_summary(self, summary: dict, metrics: dict[str, float], files: list[Path],
                    images: list[Path]) -> None:
        self._log({f"summary/{k}": v for k, v in metrics.items()}, summary.get("epochs", 0))
        run_dir = Path(summary["run_dir"])
        for path in files:
            if path.parent == run_dir:  # .hydra/ went at the start
                self.client.log_artifact(self.run_id, str(path), "run")
        for path in images:
            self.client.log_artifact(self.run_id, str(path), "plots")
        if self.log_model:
            for name in exported_files(summary):
                self.client.log_artifact(self.run_id, str(run_dir / name), "model")

    def finish(self, status: str, error: str | None) -> None:
        if self.run_id is None:
            return
        if error:
            self.client.set_tag(self.run_id, "pdprune.error", error[:5000])
        self.client.set_terminated(self.run_id, status=status)


def exported_files(summary: dict) -> list[str]:
    """The model files the run exported (summary.json's export section names them)."""
    names = summary.get("export", {}).get("files", [])
    return [n for n in names if (Path(summary["run_dir"]) / n).is_file()]
