"""Loggers (logger=...): what a run writes to MLflow, TensorBoard, W&B and metrics.csv, read
back with each tool's own reader; a failing logger never costs the run; resume continues the
same MLflow run and TensorBoard steps; report.py --mlflow reproduces a sweep folder's table."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pdprune.errors import PdpruneError
from pdprune.run import run
from pdprune.tracking import Tracker, build_tracker
from pdprune.tracking.base import RunLogger
from pdprune.tracking.context import RunContext

from .conftest import TINY
from .test_resume import Killed, die_after_checkpoint

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def prune_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "pdprune", *args, "trainer.threads=1",
                           "trainer.progress=false"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


# ---------------------------------------------------------------- the tracker itself


class Recorder(RunLogger):
    """Notes each hook called; raises in `fail_in`."""

    def __init__(self, fail_in: str | None = None):
        self.calls, self.fail_in = [], fail_in

    def _called(self, hook: str) -> None:
        self.calls.append(hook)
        if hook == self.fail_in:
            raise OSError("database is locked")

    def start(self, context, previous):
        self._called("start")
        return {}

    def log_step(self, step, values):
        self._called("log_step")

    def log_epoch(self, epoch, step, values):
        self._called("log_epoch")

    def finish(self, status, error):
        self._called("finish")


def test_a_failing_logger_warns_once_and_the_others_go_on(tmp_path, caplog):
    broken, fine = Recorder(fail_in="log_step"), Recorder()
    tracker = Tracker({"broken": broken, "fine": fine})
    with caplog.at_level(logging.WARNING, logger="pdprune"), \
            tracker.running(RunContext(tmp_path, {})):
        for step in range(3):
            tracker.log_step(step, {"loss": 1.0})
        tracker.log_epoch(1, 3, {"epoch": 1, "val_top1": 0.5}, {})
    assert broken.calls == ["start", "log_step"]  # off after its first failure
    assert fine.calls == ["start", "log_step", "log_step", "log_step", "log_epoch", "finish"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "logger broken failed in log_step (database is locked)" \
        in warnings[0] and "own files are not affected" in warnings[0]


def test_a_missing_backend_is_one_line_naming_its_extra(monkeypatch, make_cfg):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(PdpruneError, match=r'logger=wandb needs wandb, which is not installed '
                       r'here: pip install -e "\.\[wandb\]"'):
        build_tracker(make_cfg("logger=[csv,wandb]").logger)


def test_an_epoch_logs_its_record_and_each_layers_sparsity(tmp_path):
    seen = []

    class Epochs(RunLogger):
        def log_epoch(self, epoch, step, values):
            seen.append((epoch, step, values))

    tracker = Tracker({"epochs": Epochs()})
    tracker.log_epoch(2, 38, {"epoch": 2, "step": 38, "val_top1": 0.75, "masks": "soft",
                              "nested": {"a": 1}}, {"fc1": 0.5})
    assert seen == [(2, 38, {"val_top1": 0.75, "nested/a": 1.0,
                             "layer_sparsity/fc1": 0.5})]


def test_layer_sparsity_counts_each_layers_zeros(make_cfg, tmp_path):
    from pdprune.api import Pruning
    from pdprune.models import build_model

    cfg = make_cfg(*TINY, "method=magnitude", "schedule=oneshot", "schedule.epoch=0",
                   "sparsity=0.5", "method.budget=uniform")
    model = build_model(cfg.model, (1, 8, 8), 10)
    pruning = Pruning.from_config(cfg, model, steps_per_epoch=1)
    pruning.before_step(0)
    by_layer = pruning.layer_sparsity()
    modules = dict(model.named_modules())
    for name, sparsity in by_layer.items():
        weight = modules[name].weight  # the masked weight the layer computes with
        assert sparsity == (weight == 0).sum().item() / weight.numel() == 0.5
    assert set(by_layer) == set(pruning.layers)


# ---------------------------------------------------------------- each backend, read back


def test_mlflow_tensorboard_and_csv_record_the_run(make_cfg, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)  # the default store: sqlite:///mlruns.db here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    summary = run(make_cfg(*TINY, "logger=many", "trainer.log_every_n_steps=5"), run_dir)
    epochs = records(run_dir)
    val = [r["val_top1"] for r in epochs]
    steps = [r["step"] for r in epochs]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "prune-train"]
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["method.name"] == "pdp" and mlrun.data.params["sparsity"] == "0.9"
    assert mlrun.data.tags["pdprune.method"] == "pdp"
    history = client.get_metric_history(mlrun.info.run_id, "val_top1")
    assert [(m.step, m.value) for m in history] == list(zip(range(1, 5), val, strict=True))
    loss_steps = [m.step for m in client.get_metric_history(mlrun.info.run_id,
                                                            "train_step/loss")]
    assert loss_steps == list(range(5, steps[-1] + 1, 5))
    assert mlrun.data.metrics["summary/accuracy/test/top1"] == summary["accuracy"]["test"]["top1"]
    logged = Path(client.download_artifacts(mlrun.info.run_id, "run/summary.json",
                                            str(tmp_path / "dl")))
    assert json.loads(logged.read_text()) == json.loads((run_dir / "summary.json").read_text())
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id, "plots")}
    assert artifacts == {"plots/training.png", "plots/layer_sparsity.png"}
    assert [a.path for a in client.list_artifacts(mlrun.info.run_id, "model")] == \
        ["model/model.safetensors"]

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_top1")] == \
        pytest.approx(list(zip(steps, val, strict=True)))
    assert [e.value for e in events.Scalars("epoch")] == [1, 2, 3, 4]
    assert {"layer_sparsity/fc1", "train_step/loss", "summary/achieved_sparsity"} \
        <= set(events.Tags()["scalars"])
    assert set(events.Tags()["images"]) == {"plots/training", "plots/layer_sparsity"}

    with (run_dir / "metrics.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [float(row["val_top1"]) for row in table] == val
    assert [row["epoch"] for row in table] == ["1", "2", "3", "4"]


def test_a_store_that_cannot_be_written_costs_only_the_logger(make_cfg, tmp_path, caplog):
    store = f"sqlite:///{tmp_path}/not_a_folder/sub/mlruns.db"
    (tmp_path / "not_a_folder").write_text("a file")
    with caplog.at_level(logging.WARNING, logger="pdprune"):
        summary = run(make_cfg(*TINY, "logger=[csv,mlflow]",
                               f"logger.mlflow.tracking_uri={store}"), tmp_path / "run")
    assert summary["accuracy"]["test"]["top1"] > 0 and (tmp_path / "run/summary.json").exists()
    assert (tmp_path / "run/metrics.csv").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("logger mlflow failed in start")


def test_resume_continues_the_same_mlflow_run_and_tensorboard_steps(make_cfg, tmp_path,
                                                                    monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = [*TINY, "logger=[mlflow,tensorboard]", "trainer.log_every_n_steps=5"]
    run_dir = tmp_path / "run"
    die_after_checkpoint(monkeypatch, epoch=2)
    with pytest.raises(Killed):
        run(make_cfg(*overrides), run_dir)
    monkeypatch.undo()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    (killed,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert killed.info.status == "FAILED"

    run(make_cfg(*overrides, f"trainer.resume={run_dir}"), run_dir)
    (resumed,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    val = [r["val_top1"] for r in records(run_dir)]
    history = client.get_metric_history(resumed.info.run_id, "val_top1")
    assert [(m.step, m.value) for m in history] == list(zip(range(1, 5), val, strict=True))

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train_step/loss")]
    assert steps == sorted(set(steps)) and [e.value for e in events.Scalars("epoch")] == \
        [1, 2, 3, 4]


@pytest.mark.slow
def test_wandb_writes_an_offline_run_in_the_run_folder(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    run(make_cfg(*TINY, "logger=wandb"), run_dir)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (events,) = offline.glob("run-*.wandb")
    assert events.stat().st_size > 0
    state = json.loads((run_dir / "tracking.json").read_text())
    assert offline.name.endswith(state["wandb"]["id"])


# ---------------------------------------------------------------- as a user runs it


@pytest.mark.slow
def test_a_sweep_is_one_experiment_and_its_report_reads_back_the_same(tmp_path, monkeypatch):
    prune_train(tmp_path, "-m", "method=pdp,gmp", "experiment=smoke", "logger=mlflow",
                "hydra.sweep.dir=sweep")
    assert (tmp_path / "mlruns.db").exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    experiments = [e for e in client.search_experiments()
                   if client.search_runs([e.experiment_id])]
    assert [e.name for e in experiments] == ["sweep"]
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.data.params["choice.method"] for r in runs) == ["gmp", "pdp"]

    report = _script("report")
    monkeypatch.chdir(tmp_path)
    report.main(["sweep", "--out", "from_folder"])
    report.main(["--mlflow", "sqlite:///mlruns.db"])
    folder_table = (tmp_path / "from_folder" / "report.csv").read_text()
    assert folder_table == (tmp_path / "mlflow_report" / "report.csv").read_text()
    assert folder_table.count("\n") == 3  # a header and the two runs

    _serves_the_run(tmp_path, runs[0].info.run_id)


def _script(name: str):
    """scripts/NAME.py as a module (its main(argv) is what the command line runs)."""
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serves_the_run(folder: Path, run_id: str) -> None:
    """`mlflow ui` on the store serves the run over its REST API."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:///mlruns.db",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=folder,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={run_id}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    served = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, "mlflow ui exited"
                assert time.monotonic() < deadline, "mlflow ui did not answer in 120 s"
                time.sleep(1)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    assert served["run"]["info"]["run_id"] == run_id
    assert served["run"]["info"]["status"] == "FINISHED"
