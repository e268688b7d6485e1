"""A run killed after epoch k and resumed ends exactly like an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pdprune.run import run
from pdprune.train import loop

from .conftest import TINY

TIMING = {"epoch_time_s"}


class Killed(Exception):
    pass


def metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.mark.parametrize("granularity", ["unstructured", "channel"])
@pytest.mark.parametrize("method", ["pdp", "gmp"])
def test_resume_after_kill_equals_uninterrupted(make_cfg, tmp_path, monkeypatch, method,
                                                granularity):
    overrides = [*TINY, f"method={method}", f"granularity={granularity}", "trainer.epochs=5"]
    if granularity == "channel":  # 0.9 of one 32-channel layer in blocks of 8 cannot be met
        overrides.append("sparsity=0.5")
    check_resume(make_cfg, tmp_path, monkeypatch, overrides)


LAYER_AND_EPI = {
    # blocks removed after epoch 1: the resumed run must rebuild the shallower network
    "layerprune": ["model=resnet20", "method=layerprune", "method.layers_to_remove=2",
                   "schedule.epoch=1", "export.latency_repeats=3", "export.latency_compiled=false"],
    # the indicator's history, its trigger and the planned counts live in the checkpoint
    "epi": ["model=resnet20", "granularity=channel", "schedule=epi", "sparsity=0.5",
            "schedule.tau=0.5", "schedule.max_epoch=4"],
    # channels removed from the live model at the starts of epochs 2 and 3: the resumed run
    # rebuilds the compacted network (and its optimizer state) from the checkpoint
    "compacted": ["model=resnet20", "granularity=channel", "method=gmp", "sparsity=0.5",
                  "schedule.start_epoch=1", "schedule.end_epoch=3", "schedule.dt=2"],
    # PDP hardened after its first epoch at the target, then compacted
    "pdp_ramp_end": ["model=resnet20", "granularity=channel", "method=pdp", "sparsity=0.5",
                     "method.harden_at=ramp_end", "schedule.warmup_epochs=1",
                     "schedule.ramp_epochs=1"],
    "epi_compacted": ["model=resnet20", "granularity=channel", "schedule=epi",
                      "method=magnitude", "sparsity=0.5", "schedule.tau=0.5",
                      "schedule.max_epoch=2"],
}


@pytest.mark.parametrize("name", list(LAYER_AND_EPI))
def test_resume_of_layer_and_epi_runs(make_cfg, tmp_path, monkeypatch, name):
    overrides = ["dataset=synthetic", "trainer.epochs=5", "trainer.progress=false",
                 *LAYER_AND_EPI[name]]
    check_resume(make_cfg, tmp_path, monkeypatch, overrides)


def die_after_checkpoint(monkeypatch, epoch: int) -> None:
    """Runs raise Killed right after writing epoch `epoch`'s checkpoint (monkeypatch.undo())."""
    save = loop.Trainer.save_checkpoint

    def save_then_die(self):
        save(self)
        if self.state.epoch == epoch:
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save_checkpoint", save_then_die)


def check_resume(make_cfg, tmp_path, monkeypatch, overrides: list[str]) -> None:
    whole = tmp_path / "whole"
    run(make_cfg(*overrides), whole)

    # kill right after epoch 2's checkpoint is written (mid-ramp: masks and budgets are live)
    killed = tmp_path / "killed"
    die_after_checkpoint(monkeypatch, epoch=2)
    with pytest.raises(Killed):
        run(make_cfg(*overrides), killed)
    monkeypatch.undo()
    assert len(metrics(killed)) == 2 and not (killed / "summary.json").exists()

    # a half-written epoch-3 line (the process died between metrics and checkpoint) is dropped
    with (killed / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 3, "val_top1": -1}) + "\n")
    run(make_cfg(*overrides, f"trainer.resume={killed}"), killed)

    a, b = load_file(str(whole / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert metrics(whole) == metrics(killed)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, killed))
    assert sa["accuracy"] == sb["accuracy"] and sa["layers"] == sb["layers"]


def test_resume_accepts_the_width_that_match_nonzeros_derived():
    from pdprune.errors import ConfigError
    from pdprune.train.checkpoint import check_same_run

    saved = {"model": {"width": 0.42, "match_nonzeros": 0.9}, "sparsity": 0.9}
    composed = {"model": {"width": 2.0, "match_nonzeros": 0.9}, "sparsity": 0.9}
    check_same_run(saved, composed)  # the width is computed again from the same cause
    with pytest.raises(ConfigError, match="model.match_nonzeros"):
        check_same_run(saved, {"model": {"width": 2.0, "match_nonzeros": 0.5}, "sparsity": 0.9})
    with pytest.raises(ConfigError, match="model.width"):
        check_same_run({"model": {"width": 0.42, "match_nonzeros": None}, "sparsity": 0.9},
                       {"model": {"width": 2.0, "match_nonzeros": None}, "sparsity": 0.9})
