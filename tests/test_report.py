"""Sweeps and their report: a failed job leaves the others intact and shows in the report;
recipes compose to the runs they promise; the small-dense arm matches the large-sparse
non-zeros."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pdprune.config.preflight import check
from pdprune.errors import ConfigError, PdpruneError
from pdprune.models import build_model
from pdprune.models.width_match import matched_width, parameter_count, pruned_nonzeros
from pdprune.pruning.targets import select_targets
from pdprune.report import cost_table, find_runs, series_label, write_report

from .fakedata import CIFAR_FOLDERS, write_cifar

ROOT = Path(__file__).resolve().parents[1]


def sweep(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pdprune", "-m", "experiment=smoke",
                           "trainer.epochs=2", "trainer.progress=false", *args,
                           f"hydra.sweep.dir={folder}"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=folder.parent)


def report_rows(folder: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (folder / "report" / "report.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_failed_job_leaves_the_others_and_is_reported(tmp_path, launcher):
    if launcher == "joblib" and importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") \
            is None:
        pytest.skip("hydra-joblib-launcher not installed (pip install -e '.[sweeps]')")
    # a CIFAR folder whose files pass the start-up check (sizes, ends) but hold no images:
    # only building the data finds it, so those jobs fail after their folders exist
    write_cifar(tmp_path / "good")
    broken = write_cifar(tmp_path / "broken") and tmp_path / "broken" / CIFAR_FOLDERS["cifar10"]
    for batch in [*broken.glob("data_batch_*"), broken / "test_batch"]:
        batch.write_bytes(pickle.dumps({b"labels": [0], b"padding": bytes(4000)}, protocol=2))
    folder = tmp_path / "sweep"
    extra = ["hydra/launcher=cpu_parallel", "trainer.threads=1"] if launcher == "joblib" else []
    proc = sweep(folder, "dataset=cifar10", "dataset.val_size=8",
                 f"dataset.root={tmp_path / 'broken'},{tmp_path / 'good'}", "sparsity=0.5,0.9",
                 *extra)
    assert proc.returncode != 0  # the sweep says something failed...
    assert "no b'data'" in proc.stderr
    finished = sorted(folder.rglob("summary.json"))
    assert len(finished) == 2  # ...after the jobs that could run have run
    assert {json.loads(p.read_text())["target_sparsity"] for p in finished} == {0.5, 0.9}

    rows = report_rows(folder)
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "ok", "ok"]
    for r in rows:
        if r["status"] == "failed":
            assert "data_batch_1: not a CIFAR-10 batch (no b'data')" in r["note"]
            assert r["test_top1"] == ""
        else:
            assert float(r["achieved"]) == pytest.approx(float(r["sparsity"]), abs=1e-4)
            assert 0 <= float(r["test_top1"]) <= 1  # random images: any accuracy
    text = (folder / "report" / "report.md").read_text()
    assert "4 runs: 2 ok, 2 failed, 0 incomplete" in text
    listed = [line for line in text.splitlines() if line.startswith("- `")]
    assert len(listed) == 2 and all("broken" in x and "(failed)" in x for x in listed)
    assert "## Runs that did not finish" in text
    for png in ("accuracy_vs_sparsity", "accuracy_vs_nonzeros", "layer_sparsity"):
        assert (folder / "report" / f"{png}.png").stat().st_size > 10_000


def _fake_run(folder: Path, *, method: str, sparsity: float, seed: int, top1: float | None,
              error: str | None = None, epochs_done: int = 0) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(
        {"model": {"name": "lenet"}, "dataset": {"name": "fashion_mnist"},
         "method": {"name": method}, "granularity": {"name": "unstructured"},
         "schedule": {"name": "cubic"}, "sparsity": sparsity, "seed": seed}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e + 1}) + "\n" for e in range(epochs_done)))
    if error:
        (folder / "error.txt").write_text(error)
    if top1 is not None:
        (folder / "summary.json").write_text(json.dumps({
            "model": "lenet", "dataset": "fashion_mnist", "method": method,
            "granularity": "unstructured", "schedule": "cubic", "target_sparsity": sparsity,
            "achieved_sparsity": sparsity, "weight_sparsity": sparsity,
            "sparsity_unit": "weights", "accuracy": {"test": {"top1": top1}},
            "accuracy_masks": "hardened", "nonzero_counting": "zeros",
            "last_epoch": {"epoch": 3, "val_top1": top1 - 0.05,
                           "masks": "soft" if method == "pdp" else "hard"},
            "params": 1000, "nonzero_params": round(1000 * (1 - sparsity)),
            "flops_dense": 10, "flops_nonzero": 5, "train_time_s": 1.0, "epochs": 3,
            "training_cost": {"vs_dense": 1.0, "nonzero_vs_dense": 0.5 + 0.1 * seed,
                              "measured_vs_dense": 1.25},
            "layers": [{"name": "fc1", "sparsity": sparsity}, {"name": "fc2", "sparsity": 0.1}],
            "latency": {"cpu": {"1": {"dense": {"median_ms": 2.0},
                                      "exported": {"median_ms": 1.0}},
                                "64": {"dense": {"median_ms": 10.0},
                                       "exported": {"median_ms": 4.0}}},
                        "cpu_compiled": {"64": {"dense": {"median_ms": 5.0},
                                                "exported": {"median_ms": 1.5}}}}}))


def test_report_rows_statuses_and_seed_statistics(tmp_path):
    root = tmp_path / "multirun"
    for i, (method, sparsity, seed, top1) in enumerate(
            [("pdp", 0.5, 0, 0.90), ("pdp", 0.5, 1, 0.86), ("gmp", 0.5, 0, 0.80),
             ("gmp", 0.9, 0, 0.70)]):
        _fake_run(root / f"{i}_x", method=method, sparsity=sparsity, seed=seed, top1=top1)
    _fake_run(root / "4_x", method="gmp", sparsity=0.9, seed=1, top1=None, epochs_done=2)
    _fake_run(root / "5_x", method="gmp", sparsity=0.9, seed=2, top1=None,
              error="Traceback (most recent call last):\n  ...\nRuntimeError: out of memory\n")
    _fake_run(root / "10_x", method="pdp", sparsity=0.9, seed=0, top1=0.8)

    runs = find_runs(root)
    assert [r.folder.name for r in runs] == ["0_x", "1_x", "2_x", "3_x", "4_x", "5_x", "10_x"]
    report = write_report(root, tmp_path / "out", layers_of="1_x")
    rows = report["rows"]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["incomplete", "failed", "ok"]
    assert rows[4]["note"] == "2 epochs done, no summary" and rows[4]["epochs"] == 2
    assert rows[5]["note"] == "RuntimeError: out of memory"  # a traceback's last line
    assert rows[0]["cpu_latency_vs_dense"] == 0.4  # at the largest batch timed
    assert rows[0]["compiled_latency_vs_dense"] == 0.3  # torch.compile, when timed
    assert rows[4]["compiled_latency_vs_dense"] == ""
    assert series_label(rows[0], rows) == "pdp"
    # which masks measured which accuracy: the final network's, the last epoch's (PDP: soft)
    assert [(r["accuracy_masks"], r["last_epoch_masks"]) for r in rows[:5]] == \
        [("hardened", "soft")] * 2 + [("hardened", "hard")] * 2 + [("", "")]
    assert rows[0]["last_val_top1"] == pytest.approx(0.85) and rows[4]["last_val_top1"] == ""
    text = (tmp_path / "out" / "report.md").read_text()
    assert "7 runs: 5 ok, 1 failed, 1 incomplete" in text
    assert "test_top1: the final network, masks hardened" in text
    assert "`4_x` (incomplete)" in text and "`5_x` (failed): RuntimeError" in text
    assert "Per-layer sparsity plotted for" in text and text.rstrip().endswith("1_x`.")
    assert rows[1]["nonzero_train_macs_vs_dense"] == pytest.approx(0.6)
    # the cost table: means over seeds (pdp at 0.5: seeds 0 and 1), one line per series
    assert ("| pdp | 0.5 | 2 | 0.8800 | 5.0000 | 500 | 1.0000 | 0.5500 | 1.2500 |"
            in cost_table(rows))
    assert "| gmp | 0.9 | 1 | 0.7000 |" in text  # the failed gmp seeds are not averaged
    with pytest.raises(ValueError, match="no finished run"):
        write_report(root, tmp_path / "out2", layers_of="4_x")
    with pytest.raises(ValueError, match="no runs found"):
        write_report(tmp_path / "out", tmp_path / "out3")


def test_recipes_compose_to_their_sweeps():
    # each recipe's whole sweep: tests/test_config_errors.py::test_every_recipe_passes_the_checks
    assert check(["-m", "experiment=pdp_vs_gmp", "seed=0"]) == 8  # the command line wins
    # the like-with-like line of configs/experiment/baselines.yaml: every method has a budget
    assert check(["-m", "experiment=baselines", "method=pdp,gmp,snip,granet",
                  "method.budget=uniform,global", "seed=0"]) == 4 * 2 * 2
    with pytest.raises(PdpruneError, match="model.width"):
        check(["-m", "experiment=zhu_gupta_sparse_vs_dense", "model=resnet18"])


def test_launcher_configs_compose_or_say_what_to_install():
    from hydra import compose, initialize_config_dir

    from pdprune.config import CONFIG_DIR

    wanted = {"cpu_parallel": "hydra_joblib_launcher", "slurm_gpu": "hydra_submitit_launcher"}
    for option, plugin in wanted.items():
        if importlib.util.find_spec(f"hydra_plugins.{plugin}") is None:
            with pytest.raises(PdpruneError, match=r"pip install -e \"\.\[sweeps\]\""):
                check(["-m", f"hydra/launcher={option}", "experiment=smoke"])
            continue
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra/launcher={option}"],
                          return_hydra_config=True)
        assert plugin in cfg.hydra.launcher._target_
    with pytest.raises(PdpruneError, match="hydra/launcher=nope: no such option"):
        check(["-m", "hydra/launcher=nope", "experiment=smoke"])


@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.9, 0.95])
def test_small_dense_width_matches_the_large_sparse_nonzeros(make_cfg, sparsity):
    cfg = make_cfg("experiment=zhu_gupta_sparse_vs_dense", "+arm=small_dense",
                   f"sparsity={sparsity}")
    shape, classes = (1, 28, 28), 10
    build = lambda c: build_model(c, shape, classes)  # noqa: E731
    prunable = lambda m: [x for _, x in select_targets(m, cfg.method.targets)]  # noqa: E731
    width, params, target = matched_width(cfg.model, build, prunable, sparsity)
    wide = build(cfg.model)
    assert target == pruned_nonzeros(wide, prunable(wide), sparsity)
    assert target == parameter_count(wide) - round(sparsity * sum(
        m.weight.numel() for m in prunable(wide)))
    assert 0 < width < cfg.model.width
    narrow = OmegaConf.merge(cfg.model, {"width": width})
    assert parameter_count(build(narrow)) == params
    # widths round to whole channels: no width on a fine grid comes closer to the target
    grid = [OmegaConf.merge(cfg.model, {"width": cfg.model.width * i / 400}) for i in range(1, 400)]
    assert min(abs(parameter_count(build(c)) - target) for c in grid) >= abs(params - target)
    assert abs(params - target) / target < 0.05


def test_width_matching_needs_a_width(make_cfg):
    cfg = make_cfg("model=resnet18")
    with pytest.raises(ConfigError, match="model.match_nonzeros"):
        matched_width(cfg.model, lambda c: None, lambda m: [], 0.5)
    with pytest.raises(PdpruneError, match="model.match_nonzeros=1.5: must be a sparsity"):
        check(["model.match_nonzeros=1.5"])


def test_a_sweep_over_a_key_reports_it_like_a_config_group(tmp_path):
    """`-m method.budget=uniform,global`: the budget is a column and names the curves, so the
    two policies are never averaged together."""
    root = tmp_path / "multirun"
    for i, (budget, top1) in enumerate([("uniform", 0.80), ("global", 0.90)]):
        _fake_run(root / f"{i}_x", method="gmp", sparsity=0.9, seed=0, top1=top1)
        (root / f"{i}_x" / ".hydra" / "overrides.yaml").write_text(
            f"- method=gmp\n- method.budget={budget}\n- hydra.job.chdir=false\n")
    rows = write_report(root, tmp_path / "out")["rows"]
    assert [r["method.budget"] for r in rows] == ["uniform", "global"]
    assert "hydra.job.chdir" not in rows[0]
    assert [series_label(r, rows) for r in rows] == ["gmp / uniform", "gmp / global"]
    table = cost_table(rows)
    assert "| gmp / uniform | 0.9 | 1 | 0.8000 |" in table
    assert "| gmp / global | 0.9 | 1 | 0.9000 |" in table
