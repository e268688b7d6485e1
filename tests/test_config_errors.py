"""Every config error is one line naming the key and value, before any run folder exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdprune.config.preflight import check
from pdprune.errors import PdpruneError

BAD = [
    (["method=foo"], "method=foo: no such option"),
    (["sparsity=1.0"], "sparsity=1.0: must be in [0, 1)"),
    (["sparsity=-0.1"], "sparsity=-0.1: must be in [0, 1)"),
    (["sparsity=abc"], "sparsity=abc: Value 'abc'"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be a positive"),
    (["schedule.ramp_epochs=40"], "schedule.ramp_epochs=40: warm-up 3 + ramp 40 epochs reaches"),
    (["method=gmp", "schedule.end_epoch=31"], "schedule.end_epoch=31: ends after training ends"),
    (["method=magnitude", "schedule.epoch=30"], "schedule.epoch=30: must be in [0, 30)"),
    (["dataset=fashion_mnist", "dataset.root=/no/such/dir"], "dataset.root=/no/such/dir: no such"),
    (["method.tauu=3"], "method.tauu: no such key"),
    (["model=lenet", "model.hidden=[3]"], "model.hidden: no such key"),
    (["method.budget=foo"], "method.budget=foo: must be one of uniform, global"),
    (["-m", "sparsity=0.5,1.5"], "sparsity=1.5: must be in [0, 1)"),
    (["sparsity=0.5,0.9"], "a sweep needs --multirun"),
    (["export.compact=true"], "export.compact=true: needs granularity=channel"),
    (["granularity=channel", "method=dense", "export.compact=true"], "export.compact=true: needs"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_config_is_one_line_naming_key_and_value(argv, message):
    with pytest.raises(PdpruneError) as err:
        check(argv)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_missing_fashion_mnist_files_are_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(PdpruneError, match="missing train-labels-idx1-ubyte"):
        check(["dataset=fashion_mnist", f"dataset.root={tmp_path}"])


RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs" /
                                  "experiment").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_passes_the_checks(recipe):
    """A recipe that names a key the schema lacks, or a bad value, fails here and not after a
    user's first hour of training; a sweep recipe has every job checked."""
    assert check(["-m", f"experiment={recipe}"]) >= 1


def test_good_sweep_checks_every_job():
    assert check(["-m", "method=pdp,gmp", "sparsity=0.5,0.9", "experiment=smoke"]) == 4


def test_cli_exits_2_with_one_line_and_leaves_no_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdprune", "trainer.epochs=0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prune-train: error: trainer.epochs=0: must be a positive number of epochs"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
