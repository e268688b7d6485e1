"""A non-finite loss (or non-finite weights) stops the run at once, in one line, and the last
good checkpoint stays as it was."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch

from pdprune.errors import PdpruneError
from pdprune.run import run
from pdprune.train import loop
from pdprune.train.checkpoint import CHECKPOINT, load_checkpoint

from .conftest import TINY

# synthetic: 256 training samples in batches of 32, so 8 steps per epoch


def poison_before_step(monkeypatch, step: int) -> None:
    """A NaN weight going into optimizer step `step` (1-based): that step's loss is NaN."""
    original = loop.Trainer.train_step

    def train_step(self, x, y):
        if self.state.step == step - 1:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")
        return original(self, x, y)

    monkeypatch.setattr(loop.Trainer, "train_step", train_step)


def record_checkpoints(monkeypatch) -> list[tuple[int, str]]:
    """(step, sha256 of last.pt) after every checkpoint write."""
    written = []
    original = loop.Trainer.save_checkpoint

    def save(self):
        original(self)
        digest = hashlib.sha256((self.run_dir / CHECKPOINT).read_bytes()).hexdigest()
        written.append((self.state.step, digest))

    monkeypatch.setattr(loop.Trainer, "save_checkpoint", save)
    return written


def defer_checks(monkeypatch) -> None:
    """The CUDA way on the CPU: flags kept on the device, read every SYNC_EVERY steps."""
    finite = loop.FiniteLoss
    monkeypatch.setattr(loop, "FiniteLoss", lambda device, deferred: finite(device, True))


@pytest.mark.parametrize("deferred", [False, True], ids=["checked-each-step", "deferred"])
@pytest.mark.parametrize("every", ["null", "2"])
def test_a_nan_loss_stops_the_run_in_one_line_and_keeps_the_last_good_checkpoint(
        make_cfg, tmp_path, monkeypatch, deferred, every):
    if deferred:
        defer_checks(monkeypatch)
    poison_before_step(monkeypatch, 11)  # epoch 2's third step
    written = record_checkpoints(monkeypatch)
    cfg = make_cfg(*TINY, "trainer.threads=1", f"trainer.checkpoint_every={every}")
    with pytest.raises(PdpruneError) as caught:
        run(cfg, tmp_path)
    # the last write before step 11: epoch 1's end (step 8), or step 10 (every 2 steps)
    last_good = 8 if every == "null" else 10
    assert written[-1][0] == last_good
    assert str(caught.value) == (
        f"training diverged: non-finite loss nan at epoch 2, step 11; lower optim.lr "
        f"({cfg.optim.lr}) or lower trainer.grad_clip_norm ({cfg.trainer.grad_clip_norm}); "
        f"{CHECKPOINT} from step {last_good} is kept")
    checkpoint = tmp_path / CHECKPOINT
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == written[-1][1]
    payload = load_checkpoint(checkpoint)
    assert all(torch.isfinite(t).all() for t in payload["model"].values())
    assert not (tmp_path / "summary.json").exists()


def test_non_finite_weights_are_never_checkpointed(make_cfg, tmp_path, monkeypatch):
    original = loop.Trainer.train_step

    def train_step(self, x, y):  # the loss of epoch 2's last step is fine, its update is not
        out = original(self, x, y)
        if self.state.step == 16:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(loop.Trainer, "train_step", train_step)
    written = record_checkpoints(monkeypatch)
    cfg = make_cfg(*TINY, "trainer.threads=1", "method=gmp", "trainer.grad_clip_norm=null")
    with pytest.raises(PdpruneError) as caught:
        run(cfg, tmp_path)
    assert str(caught.value) == (
        f"training diverged: non-finite weights at epoch 2, step 16; lower optim.lr "
        f"({cfg.optim.lr}) or set trainer.grad_clip_norm (e.g. 1.0); "
        f"{CHECKPOINT} from step 8 is kept")
    assert [step for step, _ in written] == [8]


def test_no_checkpoint_yet_is_said():
    trainer = loop.Trainer.__new__(loop.Trainer)
    trainer.saved_step, trainer.grad_clip_norm, trainer.config = None, 1.0, {"optim": {"lr": 3}}
    message = str(trainer.diverged(0, 2, math.inf))
    assert message == ("training diverged: non-finite loss inf at epoch 1, step 2; lower optim.lr "
                       "(3) or lower trainer.grad_clip_norm (1.0); no checkpoint was written")


def test_deferred_flags_keep_the_first_bad_step():
    finite = loop.FiniteLoss(torch.device("cpu"), deferred=True)
    losses = [1.0, 2.0, math.nan, 3.0, -math.inf]
    for step, value in enumerate(losses, start=1):
        assert finite.observe(torch.tensor(value), step) is None  # nothing read yet
    step, loss = finite.read()
    assert step == 3 and math.isnan(loss)
    assert loop.FiniteLoss(torch.device("cpu"), deferred=False).observe(
        torch.tensor(math.inf), 7) == (7, math.inf)


@pytest.mark.slow
def test_a_huge_learning_rate_stops_within_the_first_epoch(tmp_path):
    """The issue's command: the default digits recipe at optim.lr=1e6."""
    done = subprocess.run([sys.executable, "-m", "pdprune", "optim.lr=1e6", "trainer.threads=1",
                           "trainer.progress=false"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("prune-train: error: training diverged: non-finite loss ")
    assert " at epoch 1, step " in line and "lower optim.lr (1000000.0)" in line
    assert line.endswith("no checkpoint was written")
    (run_dir,) = tmp_path.glob("runs/*/*")
    assert not (run_dir / CHECKPOINT).exists() and not (run_dir / "summary.json").exists()
