"""prune-train end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def prune_train(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "pdprune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def summaries(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))]


def test_embedded_default_reaches_target_and_accuracy(tmp_path):
    proc = prune_train(tmp_path, "trainer.progress=false")
    (summary,) = summaries(tmp_path / "runs")
    assert summary["method"] == "pdp" and summary["dataset"] == "digits"
    assert summary["target_sparsity"] == 0.9
    assert abs(summary["achieved_sparsity"] - 0.9) <= 0.001
    assert summary["sparsity_check"]["pruned"] == round(0.9 * summary["prunable_params"])
    assert summary["accuracy"]["test"]["top1"] >= 0.93
    assert "budget exact" in proc.stdout and "test top1" in proc.stdout
    run_dir = Path(summary["run_dir"])
    for name in ("metrics.jsonl", "model.safetensors", "checkpoints/last.pt", ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == list(range(1, 31))
    assert epochs[0]["target_sparsity"] == 0 and epochs[-1]["achieved_sparsity"] == 0.9


def test_multirun_sweep_writes_one_folder_per_job(tmp_path):
    prune_train(tmp_path, "-m", "method=pdp,gmp", "sparsity=0.5,0.9", "experiment=smoke")
    found = summaries(tmp_path / "multirun")
    assert len(found) == 4
    assert sorted((s["method"], s["schedule"], s["target_sparsity"]) for s in found) == [
        ("gmp", "cubic", 0.5), ("gmp", "cubic", 0.9), ("pdp", "pdp", 0.5), ("pdp", "pdp", 0.9)]
    for s in found:
        assert s["sparsity_check"]["exact"]


def test_resume_from_the_command_line_continues_in_the_same_folder(tmp_path):
    prune_train(tmp_path, "experiment=smoke", "method=gmp", "trainer.epochs=3")
    (first,) = summaries(tmp_path / "runs")
    run_dir = Path(first["run_dir"])
    proc = prune_train(tmp_path, f"trainer.resume={run_dir}", "trainer.epochs=5")
    assert "resumed" in proc.stdout + proc.stderr
    (second,) = summaries(tmp_path / "runs")  # same folder, no new one
    assert second["epochs"] == 5 and second["method"] == "gmp"
