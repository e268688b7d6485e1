"""scripts/bench_train.py: the three methods run the real training step at the target sparsity."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

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
    assert "compacted" not in result["ratio_to_dense"]  # only channels can be removed


CHANNEL_ARGS = ["--model", "resnet20", "--batch-size", "8", "--input", "12", "--channels", "1",
                "--steps", "1", "--rounds", "1", "--warmup", "1", "--sparsity", "0.5",
                "--granularity", "channel"]


def test_bench_times_channel_pruning_dense_masked_and_compacted(capsys):
    result = load_bench().main(CHANNEL_ARGS)
    assert result["granularity"] == "channel"
    for method in ("gmp", "pdp", "compacted"):  # a fraction of channels
        assert result["achieved_sparsity"][method] == pytest.approx(0.5, abs=0.01)
    ratio, params = result["ratio_to_dense"], result["parameters"]
    assert result["masked_to_dense"] == ratio["gmp"]
    assert result["compacted_to_dense"] == ratio["compacted"]
    assert params["gmp"] == params["dense"] > params["compacted"]
    assert result["compact_check"]["fp64"] <= 1e-5
    assert "compacted/dense" in capsys.readouterr().out


def test_compacted_arm_is_the_masked_network_without_its_pruned_channels(tmp_path):
    bench = load_bench()
    args = bench.parse_args(CHANNEL_ARGS)
    x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    compacted, masked, _ = bench.build_compacted(args, tmp_path, x)
    assert bench.parameters(compacted.model) < bench.parameters(masked.model)
    compacted.model.eval(), masked.model.eval()
    with torch.no_grad():
        difference = (compacted.model(x) - masked.model(x)).abs().max()
    assert difference <= 1e-5
    # trained as the masked network is: same optimizer and hyper-parameters, AMP, memory format
    assert type(compacted.optimizer) is type(masked.optimizer)
    assert compacted.optimizer.defaults == masked.optimizer.defaults
    assert (compacted.amp_dtype, compacted.memory_format) == (masked.amp_dtype,
                                                              masked.memory_format)
    compacted.model.train()
    loss, _ = compacted.train_step(x, torch.arange(8) % 10)
    assert torch.isfinite(loss)


def test_bench_epoch_times_whole_epochs_of_the_cifar_path(tmp_path):
    out = tmp_path / "epoch.json"
    result = load_bench("bench_epoch").main(["--model", "lenet", "--images", "200",
                                             "--batch-size", "50", "--epochs", "2",
                                             "--json", str(out)])
    assert result["images"] == 200 and len(result["epoch_s"]) == 2
    assert result["median_epoch_s"] == result["epoch_s"][1]
    assert json.loads(out.read_text())["images_per_s"] == pytest.approx(result["images_per_s"])
