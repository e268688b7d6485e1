"""Preemption-safe runs: mid-epoch checkpoints (trainer.checkpoint_every) and SIGTERM / SIGUSR1 /
Ctrl-C resume exactly like an uninterrupted run; requeued SLURM jobs continue by themselves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from pdprune.config.preflight import check
from pdprune.data.bundle import FirstBatches, TensorLoader
from pdprune.errors import ConfigError, PdpruneError, Preempted
from pdprune.run import run
from pdprune.train import loop
from pdprune.train.checkpoint import CHECKPOINT, load_checkpoint
from pdprune.train.preempt import StopSignals, checkpoint_interval, resume_requeued

from .conftest import TINY

# synthetic: 256 training samples in batches of 32, so 8 steps per epoch
STEPS_PER_EPOCH = 8


class Killed(Exception):
    pass


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"} for line in lines]


def assert_same_run(a: Path, b: Path) -> None:
    assert metrics(a) == metrics(b)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# (overrides, the step whose checkpoint is the last, (step, batch of its epoch) of each write:
# every 3 steps but not at an epoch's last one, where the end-of-epoch checkpoint (None) follows)
CASES = {
    "pdp": (["method=pdp"], 12, [(3, 3), (6, 6), (8, None), (9, 1), (12, 4)]),
    "gmp": (["method=gmp"], 12, [(3, 3), (6, 6), (8, None), (9, 1), (12, 4)]),
    # trainer.max_train_batches=6: the resumed epoch still ends at its 6th batch
    "gmp-first-batches": (["method=gmp", "trainer.max_train_batches=6"], 9,
                          [(3, 3), (6, None), (9, 3)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kill_after_a_mid_epoch_checkpoint_then_resume_equals_uninterrupted(
        make_cfg, tmp_path, monkeypatch, name):
    extra, last, expected = CASES[name]
    overrides = [*TINY, *extra, "trainer.checkpoint_every=3", "trainer.threads=1"]
    whole = tmp_path / "whole"
    run(make_cfg(*overrides), whole)

    save = loop.Trainer.save_checkpoint
    written = []

    def save_then_die(self):
        save(self)
        written.append((self.state.step, self.epoch_progress and self.epoch_progress["batch"]))
        if self.state.step == last:
            raise Killed

    killed = tmp_path / "killed"
    monkeypatch.setattr(loop.Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run(make_cfg(*overrides), killed)
    monkeypatch.undo()
    assert written == expected
    assert len(metrics(killed)) == 1 and not (killed / "summary.json").exists()
    payload = load_checkpoint(killed / CHECKPOINT)
    assert payload["state"]["epoch"] == 1 and payload["epoch_progress"]["batch"] == expected[-1][1]

    run(make_cfg(*overrides, f"trainer.resume={killed}"), killed)
    assert_same_run(whole, killed)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_signal_mid_step_checkpoints_that_step_and_resumes_equal(make_cfg, tmp_path,
                                                                   monkeypatch, signame):
    signum = getattr(signal, signame)
    overrides = [*TINY, "method=gmp", "trainer.threads=1"]
    whole = tmp_path / "whole"
    run(make_cfg(*overrides), whole)

    step = loop.Trainer.train_step

    def step_and_signal(self, x, y):
        if self.state.step == 10:  # arrives while step 11 is in flight
            os.kill(os.getpid(), signum)
        return step(self, x, y)

    killed = tmp_path / "killed"
    handler = signal.getsignal(signum)
    monkeypatch.setattr(loop.Trainer, "train_step", step_and_signal)
    with pytest.raises(Preempted) as caught:
        run(make_cfg(*overrides), killed)
    monkeypatch.undo()
    assert signal.getsignal(signum) is handler  # ours was there only while training
    assert caught.value.step == 11 and caught.value.code == 128 + signum
    assert caught.value.line(killed) == (f"{signame}; checkpoint at step 11 written; resume with: "
                                         f"prune-train trainer.resume={killed}")
    payload = load_checkpoint(killed / CHECKPOINT)
    assert payload["state"]["step"] == 11 and payload["epoch_progress"]["batch"] == 3

    run(make_cfg(*overrides, f"trainer.resume={killed}"), killed)
    assert_same_run(whole, killed)


def test_a_signal_in_an_epochs_last_step_stops_after_that_epoch(make_cfg, tmp_path, monkeypatch):
    step = loop.Trainer.train_step

    def step_and_signal(self, x, y):
        if self.state.step == 2 * STEPS_PER_EPOCH - 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, x, y)

    monkeypatch.setattr(loop.Trainer, "train_step", step_and_signal)
    with pytest.raises(Preempted) as caught:
        run(make_cfg(*TINY, "trainer.threads=1"), tmp_path)
    assert caught.value.step == 2 * STEPS_PER_EPOCH and len(metrics(tmp_path)) == 2
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch_progress"] is None


def test_first_batches_resumed_mid_epoch_stops_at_its_limit_and_later_epochs_match():
    x, y = torch.arange(40.0)[:, None], torch.arange(40)  # 10 batches of 4, 3 of them used

    def limited(seed: int) -> FirstBatches:
        return FirstBatches(TensorLoader(x, y, 4, shuffle=True, seed=seed), 3)

    for taken in (1, 3):  # 3: the state says the epoch's batches are all done
        a = limited(3)
        it = iter(a)
        head = [next(it)[1] for _ in range(taken)]
        state = a.state_dict()
        rest = [b[1] for b in it]
        later = [b[1] for b in a]
        b = limited(0)
        b.load_state_dict(state)
        assert len(head) + len(rest) == 3
        assert all(torch.equal(p, q) for p, q in zip([b[1] for b in b], rest, strict=True))
        assert all(torch.equal(p, q) for p, q in zip([b[1] for b in b], later, strict=True))


def test_by_default_a_checkpoint_comes_every_10_minutes_of_training(make_cfg, monkeypatch):
    from pdprune.train import preempt

    assert make_cfg().trainer.checkpoint_every == "10min"
    now = [1000.0]
    monkeypatch.setattr(preempt.time, "monotonic", lambda: now[0])
    clock = preempt.CheckpointClock("10min")
    now[0] += 599
    assert not clock.due(5)
    now[0] += 1
    assert clock.due(6)
    clock.written()
    assert not clock.due(7)
    assert [s for s in range(1, 10) if preempt.CheckpointClock("4").due(s)] == [4, 8]


def test_checkpoint_every_values():
    assert checkpoint_interval(None) == (None, None)
    assert checkpoint_interval("0") == (None, None)
    assert checkpoint_interval(500) == (500, None)
    assert checkpoint_interval("10min") == (None, 600.0)
    assert checkpoint_interval("2.5min") == (None, 150.0)
    for bad in ("10m", "-3", "0min", "often"):
        with pytest.raises(ConfigError, match=r"^trainer\.checkpoint_every="):
            checkpoint_interval(bad)


def test_checkpoint_every_may_change_on_resume_and_older_checkpoints_lack_it():
    from pdprune.train.checkpoint import check_same_run

    check_same_run({"trainer": {"epochs": 3}},
                   {"trainer": {"epochs": 3, "checkpoint_every": "10min"}})
    check_same_run({"trainer": {"checkpoint_every": "5"}}, {"trainer": {"checkpoint_every": None}})


def test_a_bad_checkpoint_every_is_one_line_before_any_folder():
    with pytest.raises(PdpruneError, match=r"^trainer\.checkpoint_every=10m: must be"):
        check(["trainer.checkpoint_every=10m"])


def test_a_second_ctrl_c_interrupts_at_once_and_handlers_chain():
    seen = []
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with StopSignals() as stops:
            os.kill(os.getpid(), signal.SIGINT)
            assert stops.signum == signal.SIGINT
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stops.signum == signal.SIGUSR1 and seen == []
            stops.hand_on()  # e.g. submitit's handler: requeue after our checkpoint
            assert seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_a_requeued_submitit_job_resumes_from_its_folder(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"trainer": {"resume": None}})
    monkeypatch.delenv("SUBMITIT_FOLDER", raising=False)
    (tmp_path / CHECKPOINT).parent.mkdir()
    (tmp_path / CHECKPOINT).write_bytes(b"")
    resume_requeued(cfg, tmp_path)
    assert cfg.trainer.resume is None  # not a submitit job
    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path / ".submitit"))
    resume_requeued(cfg, tmp_path / "fresh")
    assert cfg.trainer.resume is None  # no checkpoint: a fresh start
    resume_requeued(cfg, tmp_path)
    assert cfg.trainer.resume == str(tmp_path)


def test_data_loading_workers_outlive_the_signal_the_main_process_acts_on(make_cfg, tmp_path):
    """SLURM's time-limit signal and Ctrl-C reach every process of a job: a worker killed by
    them would fail the step before the checkpoint is written. SIGTERM stays the workers'
    default (DataLoader and multiprocessing stop them with it: ignored, exit would hang)."""
    from pdprune.data import build_data

    from .fakedata import write_imagefolder

    root = tmp_path / "inet"
    write_imagefolder(root, n_train=5, n_val=2)
    cfg = make_cfg("dataset=imagenet", f"dataset.root={root}", "dataset.image_size=24",
                   "dataset.resize_size=28", "dataset.num_workers=1", "dataset.batch_size=2",
                   "dataset.val_fraction=0.2").dataset
    train = build_data(cfg, seed=0).train
    it = iter(train)
    next(it)
    (worker,) = train.loader._iterator._workers  # persistent: the one that made that batch
    for signum in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        os.kill(worker.pid, signum)
    assert len([next(it)] + list(it)) == len(train) - 1 and worker.is_alive()
    worker.terminate()  # SIGTERM: the way the loader and multiprocessing stop a worker
    worker.join(timeout=30)
    assert not worker.is_alive()


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST is not installed")
def test_sigterm_mid_epoch_1_of_fashion_mnist_then_resume_gives_the_same_weights(tmp_path):
    """The issue's acceptance run: SIGTERM part-way through epoch 1, then trainer.resume."""
    args = ["dataset=fashion_mnist", "model=lenet", "model.width=0.5", "dataset.val_size=1000",
            "trainer.epochs=2", "trainer.max_train_batches=200", "trainer.threads=1",
            "trainer.progress=false"]
    # only the killed run checkpoints every 3 steps (from step 3 to the signal); checkpoints
    # change no result, and 200 batches leave the signal a wide margin inside epoch 1
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    whole.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(folder: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pdprune", *extra], cwd=folder, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    uninterrupted = start(whole, *args)  # alongside, on another core
    proc = start(killed, *args, "trainer.checkpoint_every=3")
    deadline = time.monotonic() + 60
    while not list(killed.glob("runs/*/*/checkpoints/last.pt")):  # step 3's
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    (run_dir,) = killed.glob("runs/*/*")
    assert proc.returncode == 143, err[-2000:]
    line = err.strip().splitlines()[-1]
    step = load_checkpoint(run_dir / CHECKPOINT)["state"]["step"]
    assert line == (f"prune-train: error: SIGTERM; checkpoint at step {step} written; "
                    f"resume with: prune-train trainer.resume={run_dir}")
    assert 3 <= step < 200 and not (run_dir / "metrics.jsonl").read_text()  # within epoch 1

    resumed = start(killed, f"trainer.resume={run_dir}", "trainer.checkpoint_every=null")
    for done in (resumed, uninterrupted):
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err[-2000:]
    (whole_dir,) = whole.glob("runs/*/*")
    assert (run_dir / "model.safetensors").read_bytes() == \
        (whole_dir / "model.safetensors").read_bytes()
    assert metrics(run_dir) == metrics(whole_dir)
