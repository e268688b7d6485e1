"""pdprune runs read back from an MLflow store as run folders (the files each run logged under
run/: .hydra/, summary.json, metrics.jsonl), so scripts/report.py reports them like a sweep
folder. A run that failed gets its error.txt from the `pdprune.error` tag."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..files import write_text
from ..report import ERROR_FILE
from .base import require


def download_runs(uri: str, experiment: str | None, into: Path) -> list[Path]:
    """Every pdprune run of `experiment` (None: of every experiment) into `into`, each named
    as under its sweep (`3_method=gmp,...`; under the experiment's name when there are several
    experiments). Returns the run folders."""
    require("mlflow", "mlflow", "mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = ", ".join(e.name for e in client.search_experiments())
            raise ValueError(f"--experiment {experiment}: not in {uri} (it has: {names})")
        experiments = [found]
    else:
        experiments = client.search_experiments()
    by_experiment = {e.name: [r for r in _all_runs(client, e.experiment_id)
                              if "pdprune.run_name" in r.data.tags] for e in experiments}
    by_experiment = {name: runs for name, runs in by_experiment.items() if runs}
    if not by_experiment:
        raise ValueError(f"{uri}: no pdprune runs" + (f" in {experiment}" if experiment else ""))
    if into.exists():
        shutil.rmtree(into)  # a fresh copy: runs deleted from the store leave with it
    folders = []
    for name, runs in by_experiment.items():
        base = into if len(by_experiment) == 1 else into / name.replace("/", "_")
        for run in runs:
            folder = base / run.data.tags["pdprune.run_name"]
            _download(client, run.info.run_id, folder)
            error = run.data.tags.get("pdprune.error")
            if error and not (folder / "summary.json").exists():
                write_text(folder / ERROR_FILE, error + "\n")
            folders.append(folder)
    return folders


def _all_runs(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _download(client, run_id: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not any(a.path == "run" for a in client.list_artifacts(run_id)):
        return  # nothing logged yet
    with tempfile.TemporaryDirectory() as tmp:
        got = Path(client.download_artifacts(run_id, "run", tmp))
        for item in got.iterdir():
            shutil.move(str(item), folder / item.name)
