"""Training cost (pdprune/measure/training_cost.py): the dense run's time estimated from the run's
own dense epochs, or a timed calibration when it had none; network sizes; a run's summary."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from torch import nn

from pdprune.measure.training_cost import calibrate_dense_epoch, measured_time, network_size
from pdprune.run import run

from .conftest import TINY


def no_calibration() -> dict:
    raise AssertionError("calibrated although the run had dense epochs")


def test_dense_epoch_time_is_the_median_of_the_dense_epochs():
    cost = measured_time([3.0, 1.0, 2.0, 0.5, 0.7], [True, True, True, False, False],
                         no_calibration)
    assert cost["dense_time_from"] == "dense_epochs" and cost["dense_epochs_timed"] == 3
    assert cost["dense_epoch_time_s"] == 2.0  # the median of the three dense epochs
    assert cost["dense_train_time_s"] == 10.0  # 5 epochs at the dense epoch's time
    assert cost["train_time_s"] == pytest.approx(7.2)
    assert cost["measured_vs_dense"] == pytest.approx(7.2 / 10.0)
    assert cost["epoch_time_s"] == [3.0, 1.0, 2.0, 0.5, 0.7]
    assert "calibration" not in cost


def test_median_not_mean_of_dense_epochs():
    # a slow first epoch (warm-up) does not make the dense run look slower than it is
    cost = measured_time([9.0, 1.0, 1.2, 0.5], [True, True, True, False], no_calibration)
    assert cost["dense_epoch_time_s"] == 1.2
    assert cost["measured_vs_dense"] == pytest.approx(11.7 / 4.8)


def test_no_dense_epoch_calibrates_once():
    calls = []

    def calibrate():
        calls.append(1)
        return {"epoch_time_s": 2.5, "steps": 5}

    cost = measured_time([1.0, 1.5], [False, False], calibrate)
    assert calls == [1]
    assert (cost["dense_time_from"], cost["dense_epochs_timed"]) == ("calibration", 0)
    assert cost["calibration"] == {"epoch_time_s": 2.5, "steps": 5}
    assert cost["dense_train_time_s"] == 5.0
    assert cost["measured_vs_dense"] == pytest.approx(0.5)


def test_epoch_times_and_flags_must_match():
    with pytest.raises(ValueError, match="3 epoch times but 2"):
        measured_time([1.0, 1.0, 1.0], [True, False], no_calibration)


def test_calibration_times_warmup_plus_steps_and_a_validation_and_keeps_the_rng():
    calls, built, validated = [], [], []

    def build():
        built.append(1)
        return nn.Linear(4, 3)  # draws from the global RNG

    def step(model, x, y):
        calls.append(model.weight.detach().clone())
        return nn.functional.cross_entropy(model(x), y)

    batch = (torch.randn(8, 4), torch.randint(0, 3, (8,)))
    before = torch.get_rng_state()
    timed = calibrate_dense_epoch(build, batch,
                                  lambda m: torch.optim.SGD(m.parameters(), lr=0.1), step,
                                  steps_per_epoch=10, validate=validated.append,
                                  steps=3, warmup=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert len(built) == 1 and len(calls) == 5 and len(validated) == 1
    assert not torch.equal(calls[0], calls[-1])  # the optimizer stepped: real training steps
    assert (timed["steps"], timed["warmup"], timed["batch_size"]) == (3, 2, 8)
    assert timed["step_time_s"] > 0
    assert timed["epoch_time_s"] == pytest.approx(
        10 * timed["step_time_s"] + timed["validation_s"], rel=1e-3, abs=1e-4)


def test_network_size_counts_present_layers_and_leaves_training_state_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3))
    model.train()
    stats = model[1].running_mean.clone()
    with torch.no_grad():
        model[0].weight[0, 0, 0, :2] = 0  # two zero weights, each applied at 16 positions
        model[3].weight[1, :5] = 0  # five zero weights, applied once
    size = network_size(model, (1, 4, 4))
    assert size == {"macs": 2 * 9 * 16 + 32 * 3, "nonzero_macs": 2 * 9 * 16 - 32 + 32 * 3 - 5,
                    "params": 2 * 9 + 2 + 2 + 2 + 32 * 3 + 3}
    assert model.training and torch.equal(model[1].running_mean, stats)


CHANNELS = (*TINY, "trainer.threads=1", "granularity=channel", "method=magnitude",
            "schedule=oneshot", "sparsity=0.5")


def test_a_run_measures_its_seconds_against_its_dense_epochs(make_cfg, tmp_path):
    summary = run(make_cfg(*CHANNELS, "schedule.epoch=2"), tmp_path)  # epochs 1-2 dense
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    cost = summary["training_cost"]
    times = [r["epoch_time_s"] for r in records]
    assert cost["epoch_time_s"] == times
    assert (cost["dense_time_from"], cost["dense_epochs_timed"]) == ("dense_epochs", 2)
    assert cost["dense_epoch_time_s"] == pytest.approx(statistics.median(times[:2]), abs=1e-4)
    assert cost["measured_vs_dense"] == pytest.approx(
        sum(times) / (statistics.median(times[:2]) * 4), rel=1e-3)
    # the network each epoch trained: dense for two epochs, then half the hidden channels
    params = cost["params_per_epoch"]
    assert params[:2] == [cost["dense_params"]] * 2 and params[2] == params[3] < params[0]
    assert cost["forward_macs_per_epoch"][2] < cost["forward_macs_per_epoch"][0]


def test_a_run_without_dense_epochs_calibrates(make_cfg, tmp_path):
    summary = run(make_cfg(*CHANNELS, "schedule.epoch=0", "trainer.epochs=2"), tmp_path)
    cost = summary["training_cost"]
    assert (cost["dense_time_from"], cost["dense_epochs_timed"]) == ("calibration", 0)
    calibration = cost["calibration"]
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert calibration["steps_per_epoch"] == first["step"]  # the run's steps in one epoch
    assert calibration["batch_size"] == make_cfg(*CHANNELS).dataset.batch_size
    assert calibration["step_time_s"] > 0 and calibration["validation_s"] > 0
    assert cost["dense_epoch_time_s"] == pytest.approx(calibration["epoch_time_s"], abs=1e-4)
    assert cost["measured_vs_dense"] == pytest.approx(
        sum(cost["epoch_time_s"]) / (calibration["epoch_time_s"] * 2))


def test_a_weights_run_trains_the_dense_network_throughout(make_cfg, tmp_path):
    summary = run(make_cfg(*TINY, "trainer.threads=1", "method=gmp", "schedule.start_epoch=1"),
                  tmp_path)
    cost = summary["training_cost"]
    assert cost["vs_dense"] == 1.0  # masks do not shrink the network
    assert cost["params_per_epoch"] == [cost["dense_params"]] * 4
    # what a sparse kernel would run: each epoch's non-zero weights, from metrics.jsonl
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    nonzero = [r["nonzero_macs"] for r in records]
    assert cost["nonzero_forward_macs_per_epoch"] == nonzero
    assert nonzero[-1] < nonzero[0] <= cost["forward_macs_per_epoch"][0]
    assert cost["nonzero_vs_dense"] == pytest.approx(
        sum(nonzero) / (cost["forward_macs_per_epoch"][0] * 4))
    assert cost["dense_time_from"] == "dense_epochs" and cost["measured_vs_dense"] > 0
