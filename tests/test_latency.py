"""Latency measurement: in summary.json with export.latency=true, and scripts/latency.py on a
saved run folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pdprune.measure.latency import format_latency, latency_table, measure_latency, time_interleaved
from pdprune.run import run

from .conftest import TINY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "latency.py"


def test_measure_latency_reports_ordered_percentiles_and_restores_mode():
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).train()
    result = measure_latency(model, (64,), 8, torch.device("cpu"), warmup=1, repeats=9)
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["repeats"] == 9 and model.training


def test_compared_models_are_timed_in_interleaved_rounds():
    order: list[str] = []
    result = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                              warmup=1, repeats=5, rounds=2)
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2
    assert result["a"]["repeats"] == result["b"]["repeats"] == 5


def test_a_compile_failure_is_reported_not_raised(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no C++ compiler\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    model = nn.Linear(4, 2)
    table = latency_table({"dense": model, "exported": model}, (4,), [2], 1, 3, compiled=True)
    assert table["cpu_compiled"] == {"error": "RuntimeError: InductorError: no C++ compiler"}
    assert format_latency(table)[-1] == ("latency   cpu_compiled: not measured "
                                         "(RuntimeError: InductorError: no C++ compiler)")


class Recorder(nn.Linear):
    """Records what each forward gets: the timed call, not the machine's speed, is the test."""

    def __init__(self):
        super().__init__(3, 2)
        self.calls: list[tuple] = []

    def forward(self, x):
        self.calls.append((tuple(x.shape), self.training, torch.is_grad_enabled()))
        return super().forward(x)


def test_every_timed_forward_gets_the_asked_batch_in_eval_mode_without_grad():
    model = Recorder()
    result = measure_latency(model, (3,), 7, torch.device("cpu"), warmup=2, repeats=5)
    assert model.calls == [((7, 3), False, False)] * (2 + 5)
    assert result["repeats"] == 5 and result["median_ms"] > 0


@pytest.fixture
def finished_run(make_cfg, tmp_path) -> tuple[Path, dict]:
    cfg = make_cfg(*TINY, "export.latency=true", "export.latency_batch_sizes=[1,4]",
                   "export.latency_repeats=3")
    return tmp_path, run(cfg, tmp_path)


def test_summary_holds_dense_and_exported_latency(finished_run):
    _, summary = finished_run
    for runtime in ("cpu", "cpu_compiled"):  # eager, and torch.compile with frozen weights
        by_batch = summary["latency"][runtime]
        assert set(by_batch) == {"1", "4"}
        for by_model in by_batch.values():
            assert set(by_model) == {"dense", "exported"}
            assert all(m["median_ms"] > 0 and m["repeats"] == 3 for m in by_model.values())
    compiled = summary["latency"]["cpu_compiled"]["4"]
    assert all(m["max_abs_diff_vs_eager"] <= 1e-4 for m in compiled.values())
    assert summary["input_shape"] == [1, 8, 8] and summary["num_classes"] == 4


def test_latency_script_on_a_saved_run(finished_run, tmp_path_factory, capsys):
    run_dir, _ = finished_run
    spec = importlib.util.spec_from_file_location("latency", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path_factory.mktemp("lat") / "lat.json"
    table = script.main([str(run_dir), "--batch-sizes", "2", "--repeats", "3", "--json", str(out),
                         "--no-compile"])
    assert set(table["cpu"]["2"]) == {"dense", "exported"} and "cpu_compiled" not in table
    assert json.loads(out.read_text()) == json.loads(json.dumps(table))
    assert "latency   cpu batch 2: dense" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="is not a finished run"):
        script.main([str(run_dir / "nope")])
