"""prune-train end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def prune_train(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
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
    assert summary["accuracy"]["test"]["top1"] >= 0.85  # far above chance; golden pins the rest
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


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path):
    """SIGINT lands wherever it lands (mid-epoch, mid-write); the resumed run must end with
    exactly the weights and metrics of a run that was never stopped."""
    import re
    import signal
    import time

    from safetensors.torch import load_file

    args = ["model=lenet", "model.width=4", "trainer.epochs=12", "method=gmp"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    whole.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pdprune", *args, "trainer.progress=false"],
                            cwd=killed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not list(killed.glob("runs/*/*/checkpoints/last.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    (run_dir,) = killed.glob("runs/*/*")
    hint = err.strip().splitlines()[-1]
    # in training: a checkpoint at the step in flight; elsewhere (export) the last one stands
    assert re.fullmatch(r"prune-train: error: (SIGINT; checkpoint at step \d+ written|"
                        r"interrupted); resume with: prune-train trainer\.resume=" +
                        re.escape(str(run_dir)), hint), hint
    assert "Traceback" not in err and not (run_dir / "summary.json").exists()

    # a changed config is refused, in one line
    bad = subprocess.run([sys.executable, "-m", "pdprune", f"trainer.resume={run_dir}",
                          "sparsity=0.5"], cwd=killed, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "sparsity=0.5: differs from the run being resumed" in bad.stderr

    prune_train(killed, f"trainer.resume={run_dir}")
    assert [p.parent for p in killed.glob("runs/*/*/summary.json")] == [run_dir]  # same folder
    prune_train(whole, *args)
    (whole_dir,) = whole.glob("runs/*/*")
    a = load_file(str(run_dir / "model.safetensors"))
    b = load_file(str(whole_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()

    def epochs(d):
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]

    assert epochs(run_dir) == epochs(whole_dir)


def test_channel_pruning_with_compact_onnx_and_latency(tmp_path):
    """The issue's command, on a CIFAR ResNet and the digits: a smaller model that loads
    without pdprune, equal to the masked one, in ONNX too, with its latency measured."""
    prune_train(tmp_path, "model=resnet20", "method=pdp", "granularity=channel", "sparsity=0.5",
                "experiment=smoke", "export.compact=true", "export.onnx=true",
                "export.latency=true", "export.latency_repeats=5", "trainer.progress=false",
                "export.latency_compiled=false")
    (summary,) = summaries(tmp_path / "runs")
    channels, compact = summary["channels"], summary["export"]["compact"]
    assert summary["sparsity_unit"] == "channels"
    assert channels["pruned"] == channels["expected_pruned"]  # kept counts: blocks of 8
    assert channels["round_to"] == 8 and abs(channels["fraction"] - 0.5) < 0.05
    assert compact["max_abs_diff_vs_masked"] <= 1e-5 and compact["max_abs_diff_program"] <= 1e-5
    assert compact["max_abs_diff_vs_masked_fp32"] <= 1e-4
    assert summary["export"]["onnx_max_abs_diff"] <= 1e-4
    assert compact["params"] < 0.4 * summary["params"]
    run_dir = Path(summary["run_dir"])
    assert {"compact.pt2", "compact.safetensors", "compact.onnx"} <= \
        {p.name for p in run_dir.iterdir()}
    for runtime in ("cpu", "onnxruntime"):  # torch, and the ONNX files in onnxruntime
        assert set(summary["latency"][runtime]["64"]) == {"dense", "exported"}
    script = Path(__file__).resolve().parents[1] / "scripts" / "latency.py"
    proc = subprocess.run([sys.executable, str(script), str(run_dir), "--batch-sizes", "8",
                           "--repeats", "3", "--no-compile"],  # compiled: test_latency
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compact.pt2" in proc.stdout and "cpu batch 8" in proc.stdout
    assert "onnxruntime batch 8" in proc.stdout
    assert "cpu_compiled" not in proc.stdout  # --no-compile skips exactly that runtime
