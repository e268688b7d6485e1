"""prune-train -m hparams_search=pdp|gmp: Hydra's Optuna sweeper, a study kept in SQLite that
the same command continues (pdprune/tuning/), each trial's job returning its val top-1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # CLI runs of several trials each
SMOKE = ("experiment=smoke", "trainer.threads=1", "trainer.progress=false")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pdprune", "-m", *args, *SMOKE]


def env() -> dict[str, str]:
    # as installed (scripts/setup.sh): Hydra must find the sweeper plugin by itself
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def prune_train(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*args), cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def trials(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db").trials


def jobs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and p.name[0].isdigit()),
                  key=lambda p: int(p.name.split("_", 1)[0]))


def kill_once_started(cwd: Path, folder: Path, job: int, *args: str) -> None:
    """Run the command, SIGKILL it once job `job`'s folder exists (its trial is RUNNING in the
    study: Optuna asks for a trial before Hydra makes its folder)."""
    proc = subprocess.Popen(command(*args), cwd=cwd, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(folder.glob(f"{job}_*")):
            assert proc.poll() is None and time.monotonic() < deadline, f"no job {job}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_pdp_study_continues_after_more_trials_and_a_kill(tmp_path):
    """The acceptance line: 3 trials killed in the 3rd (2 done), then the same command again
    continues to 3: the interrupted trial is failed and replaced."""
    folder = tmp_path / "multirun" / "hparams_search" / "pdp_mlp_digits"
    kill_once_started(tmp_path, folder, 2, "hparams_search=pdp", "hydra.sweeper.n_trials=3")
    proc = prune_train(tmp_path, "hparams_search=pdp", "hydra.sweeper.n_trials=3")
    assert "2 finished trial(s) of 3: running 1" in proc.stderr + proc.stdout
    found = trials(folder, "pdp_mlp_digits")
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    assert [t.number for t in complete] == [0, 1, 3]
    assert found[2].state == TrialState.FAIL and found[2].user_attrs["interrupted"]
    # job folder N is trial N (none written over), each value its run's val top-1
    assert [int(p.name.split("_", 1)[0]) for p in jobs(folder)] == [0, 1, 2, 3]
    for trial in complete:
        summary = json.loads((jobs(folder)[trial.number] / "summary.json").read_text())
        assert trial.value == summary["accuracy"]["val"]["top1"]
        assert f"method.tau={trial.params['method.tau']}" in jobs(folder)[trial.number].name
    assert found[3].params != found[0].params  # the continued sampler draws new values
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"method.tau", "optim.lr", "schedule.warmup_epochs"}
    assert results["best_value"] == max(t.value for t in complete)
    assert 1e-5 <= results["best_params"]["method.tau"] <= 1e-3
    for plot in ("optimization_history.png", "param_importances.png"):
        assert (folder / plot).stat().st_size > 0, plot

    from pdprune.report import write_report  # the trials read like any sweep's jobs

    rows = write_report(folder, tmp_path / "report")["rows"]
    # (the killed trial's row may have no overrides yet: killed before Hydra saved them)
    assert {t.params["method.tau"] for t in complete} <= \
        {float(r["method.tau"]) for r in rows if r["method.tau"] != ""}


def test_gmp_failed_trial_is_recorded_and_the_study_goes_on(tmp_path):
    """One trial's bad value (sparsity 1.5, searched so pre-flight cannot see it) fails that
    trial alone; the command ends with the failed job's line."""
    proc = prune_train(tmp_path, "hparams_search=gmp", "hydra.sweeper.n_trials=3",
                       "sparsity=choice(0.5,1.5)", code=2)
    folder = tmp_path / "multirun" / "hparams_search" / "gmp_mlp_digits"
    found = trials(folder, "gmp_mlp_digits")
    states = {t.params["sparsity"]: t.state for t in found}
    assert len(found) == 3 and states == {0.5: TrialState.COMPLETE, 1.5: TrialState.FAIL}
    assert "failed: sparsity" in proc.stderr
    done = [t for t in found if t.state == TrialState.COMPLETE]
    assert {"schedule.start_epoch", "schedule.end_epoch", "optim.lr"} <= set(done[0].params)
    summary = json.loads((jobs(folder)[done[0].number] / "summary.json").read_text())
    assert summary["schedule"] == "cubic" and summary["target_sparsity"] == 0.5
    assert (folder / "optimization_results.yaml").exists()


def test_bad_fixed_key_is_one_line_while_searched_keys_are_left_to_the_trials():
    from pdprune.config.preflight import check
    from pdprune.errors import PdpruneError

    # the searched keys (interval, tag, choice: no basic sweep) are not expanded: one job
    assert check(["-m", "hparams_search=pdp", "experiment=smoke"]) == 1
    assert check(["-m", "hparams_search=gmp", "experiment=smoke", "sparsity=choice(0.5,1.5)"]) == 1
    with pytest.raises(PdpruneError, match="optim.lrr") as bad:
        check(["-m", "hparams_search=pdp", "experiment=smoke", "optim.lrr=0.1"])
    assert len(str(bad.value).splitlines()) == 1
