"""pdprune installs like a library: the wheel holds the Hydra configs, and a user's own config
groups join ours from their project folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pdprune.config import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_every_config_and_the_sweeper_plugin(tmp_path):
    source = tmp_path / "source"  # a copy: setuptools leaves build/ where it builds
    for package in ("pdprune", "hydra_plugins"):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("pdprune-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    ours = {f"pdprune/configs/{p.relative_to(CONFIG_DIR).as_posix()}"
            for p in CONFIG_DIR.rglob("*.yaml")}
    assert len(ours) > 50 and shipped == ours
    # the tuning sweeper: Hydra takes sweepers only from the hydra_plugins package
    assert "hydra_plugins/pdprune_tuning/resumable_optuna.py" in zipfile.ZipFile(wheel).namelist()


def prune_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pdprune", *args, "trainer.progress=false"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


MYNET = """defaults:
  - /schema/model/mlp@_here_
  - _self_
name: mlp
hidden: [24]
"""


@pytest.mark.parametrize("how", [("--config-dir", "configs"), ("hydra.searchpath=[file://configs]",)])
def test_a_users_own_config_group_option(tmp_path, how):
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "configs" / "model" / "mynet.yaml").write_text(MYNET)
    done = prune_train(tmp_path, *how, "model=mynet", "dataset=synthetic", "trainer.epochs=1",
                       "hydra.run.dir=out")
    assert done.returncode == 0, done.stderr
    assert "hidden:\n  - 24" in (tmp_path / "out" / ".hydra" / "config.yaml").read_text()
    # without the search path: one line that says how to add it, and no run folder
    missing = prune_train(tmp_path, "model=mynet", "hydra.run.dir=out2")
    assert missing.returncode != 0 and not (tmp_path / "out2").exists()
    assert missing.stderr.strip().splitlines()[-1].endswith(
        "your own model/mynet.yaml: --config-dir DIR or hydra.searchpath=[file://DIR]")
