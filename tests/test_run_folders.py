"""Run folders: an error found while building the run leaves no folder; output-folder errors
and a full disk are one line; a failed write keeps the previous file; a sweep ends with one
line per failed job; another run's results are not overwritten unless asked."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pdprune import cli, run_folder
from pdprune.export.exporter import save_weights
from pdprune.measure.summary import write_summary
from pdprune.train.metrics import MetricsLog
from tests.conftest import TINY
from tests.fakedata import write_cifar

ROOT = Path(__file__).resolve().parents[1]
RUN = (*TINY, "trainer.threads=1")
_write_text = Path.write_text


def full_disk(name: str):
    """A Path.write_text that writes half of `name`'s new content, then fails as a full disk
    does (only the temporary copy that files.replacing writes: nothing else is hit)."""

    def write_text(self, text, *args, **kwargs):
        if self.name == name and self.parent.name.startswith(".writing-"):
            _write_text(self, text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return _write_text(self, text, *args, **kwargs)

    return write_text


# ---------------------------------------------------------------- writes that fail


def test_failed_summary_and_metrics_writes_keep_the_previous_files(tmp_path, monkeypatch):
    summary, metrics = tmp_path / "summary.json", MetricsLog(tmp_path / "metrics.jsonl")
    write_summary(summary, {"epochs": 1})
    metrics.append({"epoch": 1})
    before = summary.read_bytes(), metrics.path.read_bytes()
    monkeypatch.setattr(Path, "write_text", full_disk("summary.json"))
    with pytest.raises(OSError) as caught:
        write_summary(summary, {"epochs": 2, "pad": "x" * 1000})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(summary)
    monkeypatch.setattr(Path, "write_text", full_disk("metrics.jsonl"))
    with pytest.raises(OSError):
        metrics.append({"epoch": 2})
    assert (summary.read_bytes(), metrics.path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "summary.json"]
    monkeypatch.undo()
    metrics.append({"epoch": 2})  # appends still append
    assert [r["epoch"] for r in metrics.read()] == [1, 2]


def test_failed_weights_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_weights(torch.nn.Linear(2, 2), path)
    before = path.read_bytes()

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(OSError) as caught:
        save_weights(torch.nn.Linear(2, 2), path)
    assert caught.value.filename == str(path)  # the file the user knows, not the temporary one
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


# ---------------------------------------------------------------- refused before Hydra runs


def prune_train_here(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """main() in this process, for commands refused before Hydra makes any folder."""
    monkeypatch.setattr(sys, "argv", ["prune-train", *args])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    return stopped.value.code, capsys.readouterr().err


def test_run_dir_under_a_regular_file_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes").write_text("a file")
    code, err = prune_train_here(monkeypatch, capsys, *RUN,
                                 f"hydra.run.dir={tmp_path}/notes/run")
    assert code == 2
    assert err == (f"prune-train: error: hydra.run.dir={tmp_path}/notes/run: "
                   f"{tmp_path}/notes is a file, not a folder\n")


def test_results_of_another_run_are_recognised(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "prune-train.log").write_text("log")
    (run / "metrics.jsonl").write_text("")  # a run stopped before its first epoch ended
    (run / "checkpoints").mkdir()
    assert run_folder.results_in(run) == []
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "summary.json").write_text("{}")
    assert run_folder.results_in(run) == ["summary.json", "checkpoints"]
    assert run_folder.resumes(str(run), run)
    assert run_folder.resumes(str(run / "checkpoints" / "last.pt"), run)
    assert not run_folder.resumes(None, run) and not run_folder.resumes(str(tmp_path), run)
    (run / "notes.md").write_text("mine")
    (run / "teacher").mkdir()
    run_folder.clear_outputs(run)
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "notes.md", "prune-train.log"]


# ---------------------------------------------------------------- end to end (subprocesses)


def prune_train(cwd: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """`prune-train ARGS` in a subprocess; `code` runs first in it (e.g. a monkeypatch)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = ["-m", "pdprune"] if code is None else \
        ["-c", f"{code}\nfrom pdprune.cli import main\nmain()"]
    return subprocess.run([sys.executable, *command, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    """good/ and bad/ tiny CIFAR-10 folders; bad/'s test batch passes every check made before
    the run starts (sizes, pickle ends) but holds no images: found only when building."""
    root = tmp_path_factory.mktemp("cifar")
    for name in ("good", "bad"):
        write_cifar(root / name, "cifar10", per_batch=8, n_test=10)
    (root / "bad" / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"batch_label": b"x" * 4000}))
    return root


CIFAR = ("dataset=cifar10", "dataset.val_size=8", "dataset.batch_size=8", "model.hidden=[16]",
         "trainer.epochs=4", "trainer.progress=false", "trainer.threads=1")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run; tests copy it."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    proc = prune_train(folder.parent, *RUN, f"hydra.run.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_bad_dataset_file_found_while_building_leaves_no_folder(cifar, tmp_path):
    proc = prune_train(tmp_path, *CIFAR, f"dataset.root={cifar / 'bad'}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"prune-train: error: {cifar}/bad/cifar-10-batches-py/test_batch: not a CIFAR-10 batch "
        "(no b'data' and b'labels')"]  # once: not also through the log
    assert "not a CIFAR-10 batch" not in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no runs/<date>/<time>_..., and no runs/<date>/


@pytest.mark.slow
def test_sweep_with_a_failed_job_ends_with_one_line_for_it(cifar, tmp_path):
    shutil.copytree(cifar, tmp_path, dirs_exist_ok=True)  # dataset.root=good,bad: relative
    proc = prune_train(tmp_path, "-m", *CIFAR, "dataset.root=good,bad", "hydra.sweep.dir=sweep")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "JobFailed" not in proc.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 2 and jobs[1].startswith("1_") and "dataset.root=bad" in jobs[1]
    assert proc.stderr.splitlines()[-1] == (
        f"prune-train: error: job sweep/{jobs[1]} failed: bad/cifar-10-batches-py/test_batch: "
        "not a CIFAR-10 batch (no b'data' and b'labels')")
    assert sum(line.startswith("prune-train: error:") for line in proc.stderr.splitlines()) == 1
    assert (tmp_path / "sweep" / jobs[0] / "summary.json").is_file()
    failed = tmp_path / "sweep" / jobs[1]
    assert "not a CIFAR-10 batch" in (failed / "error.txt").read_text()  # scripts/report.py
    assert not (failed / "summary.json").exists()


@pytest.mark.slow
def test_reusing_a_run_folder_is_refused_unless_overwrite(finished, tmp_path, monkeypatch,
                                                          capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = prune_train_here(monkeypatch, capsys, *RUN, "sparsity=0.5",
                                 f"hydra.run.dir={run}")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"prune-train: error: hydra.run.dir={run}: holds another run's results "
                          "(metrics.jsonl, summary.json, checkpoints, model.safetensors)")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files  # untouched

    (run / "notes.md").write_text("mine")
    proc = prune_train(tmp_path, *RUN, "sparsity=0.5", "trainer.overwrite=true",
                       f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["target_sparsity"] == 0.5
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()]
    assert epochs == [1, 2, 3, 4]  # the old run's epochs are gone, not appended to
    assert (run / "notes.md").read_text() == "mine"  # only what a run writes is replaced


@pytest.mark.slow
def test_full_disk_while_writing_the_summary_is_one_line_and_keeps_the_old_one(finished,
                                                                               tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = (run / "summary.json").read_bytes()
    patch = ("from pathlib import Path\nfrom tests.test_run_folders import full_disk\n"
             "Path.write_text = full_disk('summary.json')")
    proc = prune_train(tmp_path, f"trainer.resume={run}", code=patch)  # finished: re-exports
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"prune-train: error: cannot write {run}/summary.json: No space left on device"]
    assert (run / "summary.json").read_bytes() == before
    assert "No space left on device" in (run / "error.txt").read_text()
    assert not list(run.glob(".writing-*"))
