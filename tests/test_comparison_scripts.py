"""scripts/filter_vs_layer.py and scripts/epi_vs_grid.py end to end, in their smoke mode: real
`prune-train -m` sweeps on synthetic data, tables and plots written."""

from __future__ import annotations

import csv

import pytest

from .test_bench import load_bench

pytestmark = pytest.mark.slow


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_filter_vs_layer_matches_latencies_and_tabulates(tmp_path):
    rows = load_bench("filter_vs_layer").main(["--smoke", "--out", str(tmp_path)])
    layer = [r for r in rows if r["pruning"] == "layer"]
    filters = [r for r in rows if r["pruning"] == "filter"]
    assert [r["setting"] for r in layer] == ["-1 blocks", "-3 blocks"]
    assert layer[0]["params"] > layer[1]["params"]  # two more blocks gone
    assert 1 <= len(filters) <= 2  # one matched sparsity per layer run (equal ones merge)
    # the matched sparsity is interpolated on the timed grid: inside it, whatever the timings
    assert all(0.1 <= float(r["setting"].split()[0]) <= 0.8 for r in filters)
    # timings are positive; how fast is the machine's business (a loaded one measured 3.37x)
    assert all(r["cpu_ms_b64"] > 0 and r["latency_vs_dense"] > 0 for r in rows)
    assert all(0 <= r["test_top1"] <= 1 for r in rows)
    assert all(r["train_time_s"] > 0 and r["train_time_vs_dense"] > 0 for r in rows)  # clocked
    table = read_csv(tmp_path / "filter_vs_layer.csv")
    assert [r["pruning"] for r in table] == [r["pruning"] for r in rows]
    assert set(table[0]) == set(rows[0])
    markdown = (tmp_path / "filter_vs_layer.md").read_text()
    assert markdown.startswith("| pruning | setting |")
    assert (markdown.count("\n| layer |"), markdown.count("\n| filter |")) == (2, len(filters))
    assert (tmp_path / "filter_vs_layer.png").stat().st_size > 10_000


def test_epi_vs_grid_runs_every_fixed_epoch_epi_and_early_bird(tmp_path):
    rows = load_bench("epi_vs_grid").main(["--smoke", "--out", str(tmp_path)])
    grid = [r for r in rows if r["schedule"] == "fixed epoch"]
    assert [r["prune_after_epoch"] for r in grid] == [1, 2, 3]
    costs = [r["train_cost_vs_dense"] for r in grid]
    assert costs == sorted(costs) and all(0 < c < 1 for c in costs)  # later pruning costs more
    by_cost, by_count = (next(r for r in rows if r["schedule"] == f"epi (cut={cut})")
                         for cut in ("macs", "channels"))
    for epi in (by_cost, by_count):
        assert 1 <= epi["prune_after_epoch"] <= 3 and epi["trigger"] in ("indicator", "fallback")
    # Early-Bird at its defaults: the global cut of BN scales; a window of 5 distances cannot
    # settle in 4 epochs, so it prunes at max_epoch = round(0.5 * 4)
    (early_bird,) = [r for r in rows if r["schedule"] == "early_bird (cut=channels)"]
    assert (early_bird["prune_after_epoch"], early_bird["trigger"]) == (2, "fallback")
    assert early_bird["channels_pruned"] == pytest.approx(0.5, abs=0.05)
    # cut=macs: EPI keeps the grid's MACs (up to the last channel and rounding to blocks)
    assert by_cost["kept_macs"] == pytest.approx(grid[0]["kept_macs"], rel=0.15)
    assert len({r["kept_macs"] for r in grid}) == 1
    # wall clock beside MACs: every arm timed against its own dense epochs
    assert all(r["train_time_s"] > 0 and r["train_time_vs_dense"] > 0 for r in rows)
    assert all(0 < r["kept_macs"] for r in rows)
    assert len(read_csv(tmp_path / "epi_vs_grid.csv")) == 6
    assert (tmp_path / "epi_vs_grid.png").stat().st_size > 10_000
