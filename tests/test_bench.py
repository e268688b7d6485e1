"""scripts/bench_train.py: the three methods run the real training step at the target sparsity."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_bench(name: str = "bench_train"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_times_dense_gmp_pdp_at_the_target(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = load_bench().main(["--model", "lenet", "--batch-size", "16", "--input", "28",
                                "--channels", "1", "--steps", "2", "--rounds", "1",
                                "--warmup", "1", "--sparsity", "0.8", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["ratio_to_dense"]["dense"] == 1.0
    assert result["timed_steps_per_method"] == 2
    assert result["achieved_sparsity"]["dense"] == 0.0
    assert result["achieved_sparsity"]["gmp"] == pytest.approx(0.8, abs=1e-3)
    assert result["achieved_sparsity"]["pdp"] == pytest.approx(0.8, abs=1e-3)
    assert "PDP/dense step-time ratio" in capsys.readouterr().out


def test_bench_times_channel_pruning(tmp_path):
    result = load_bench().main(["--model", "resnet20", "--batch-size", "8", "--input", "12",
                                "--channels", "1", "--steps", "1", "--rounds", "1",
                                "--warmup", "1", "--sparsity", "0.5", "--granularity", "channel"])
    assert result["granularity"] == "channel"
    for method in ("gmp", "pdp"):  # a fraction of channels
        assert result["achieved_sparsity"][method] == pytest.approx(0.5, abs=0.01)


def test_bench_epoch_times_whole_epochs_of_the_cifar_path(tmp_path):
    out = tmp_path / "epoch.json"
    result = load_bench("bench_epoch").main(["--model", "lenet", "--images", "200",
                                             "--batch-size", "50", "--epochs", "2",
                                             "--json", str(out)])
    assert result["images"] == 200 and len(result["epoch_s"]) == 2
    assert result["median_epoch_s"] == result["epoch_s"][1]
    assert json.loads(out.read_text())["images_per_s"] == pytest.approx(result["images_per_s"])
