"""Targets that cannot be met are errors before training; the summary says "exact" only when it
is (issue 17). Limits are hand-computed on tiny models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pdprune.errors import ConfigError, PdpruneError
from pdprune.measure.results import LayerResult
from pdprune.measure.summary import build_summary, format_summary
from pdprune.pruning import build_pruner
from pdprune.pruning.limits import (
    check_blocks,
    check_channel_budget,
    check_cut,
    check_weight_budget,
)


def net(hidden: tuple[int, int] = (4, 10)) -> nn.Module:
    """3 inputs -> hidden[0] -> hidden[1] -> 2 classes; the classifier stays dense, so the
    prunable layers are "0" (hidden[0] x 3) and "2" (hidden[1] x hidden[0])."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, hidden[0]), nn.ReLU(), nn.Linear(*hidden), nn.ReLU(),
                         nn.Linear(hidden[1], 2))


# --- unstructured: every layer keeps a weight


def test_uniform_limit_is_the_smallest_layers(make_cfg):
    # a 4x3 layer (12 weights): round(12 s) < 12 up to s = 0.9583 (11.4996 -> 11); 11 of 12
    # pruned is 0.9167, the value the error names
    layers = [("0", 12), ("2", 40)]
    check_weight_budget(layers, 0.9583, "uniform")
    with pytest.raises(ConfigError, match=r"^sparsity=0.96: method.budget=uniform would prune "
                       r"all 12 weights of 0; at most 0.9167 keeps a weight in every layer"):
        check_weight_budget(layers, 0.96, "uniform")
    cfg = make_cfg("method=magnitude", "method.budget=uniform", "sparsity=0.96")
    with pytest.raises(ConfigError, match="at most 0.9167"):  # when the pruner is built
        build_pruner(cfg, net(), steps_per_epoch=2)
    build_pruner(make_cfg("method=magnitude", "method.budget=uniform", "sparsity=0.9583"),
                 net(), steps_per_epoch=2)


def test_global_limit_leaves_one_weight_per_layer(make_cfg):
    # 12 + 40 weights, 2 layers: one cut may prune at most 50 (0.9615); round(52 s) <= 50 up to
    # s = 0.9711 (50.4972), and 0.972 asks for 51
    layers = [("0", 12), ("2", 40)]
    check_weight_budget(layers, 0.9711, "global")
    with pytest.raises(ConfigError, match=r"^sparsity=0.972: method.budget=global would prune 51 "
                       r"of 52 prunable weights; at most 0.9615 .* \(50 of 52\)"):
        check_weight_budget(layers, 0.972, "global")
    # issue 17: sparsity=0.999999 on the digits MLP at width 0.25 pruned all 8192 weights
    with pytest.raises(ConfigError, match="8192 of 8192 .* at most 0.9998"):
        check_weight_budget([("fc1", 4096), ("fc2", 4096)], 0.999999, "global")
    with pytest.raises(ConfigError, match="at most 0.9615"):
        build_pruner(make_cfg("method=pdp", "method.budget=global", "sparsity=0.99"), net(),
                     steps_per_epoch=2)


def test_a_global_cut_that_empties_a_layer_is_refused_when_it_is_cut(make_cfg):
    # the total fits (26 of 52), but the 12 weights of "0" are all below the others'
    model = net()
    with torch.no_grad():
        model[0].weight.fill_(1e-6)
    pruner = build_pruner(make_cfg("method=magnitude", "method.budget=global", "sparsity=0.5"),
                          model, steps_per_epoch=2)
    with pytest.raises(ConfigError, match="sparsity=0.5: the global cut .* prunes all 12 "
                                          "weights of 0; lower sparsity"):
        pruner.set_sparsity(0.5)
    check_cut([("0", 12), ("2", 40)], [11, 15], 0.5)  # one weight left: fine


# --- channels: every coupled group keeps a channel (or a block of round_to)


def test_channel_limit_names_the_reachable_fraction(make_cfg):
    # groups of 16 and 24 channels; blocks of 8: each keeps >= 8, so 8 + 16 = 24 of 40 go
    with pytest.raises(ConfigError, match=r"^sparsity=0.7: granularity=channel can remove at "
                       r"most 0.6 of channels \(24 of 40: every coupled group keeps at least 8"):
        check_channel_budget([16, 24], 0.7, "uniform", 8)
    check_channel_budget([16, 24], 0.6, "uniform", 8)
    check_channel_budget([16, 24], 0.6, "global", 8)
    # round_to=1: one channel each, 38 of 40 (0.95); a group smaller than a block stays whole
    with pytest.raises(ConfigError, match="at most 0.95 of channels .*keeps a channel"):
        check_channel_budget([16, 24], 0.97, "global", 1)
    with pytest.raises(ConfigError, match=r"at most 0.3636 of channels \(8 of 22"):
        check_channel_budget([6, 16], 0.5, "global", 8)
    # issue 17: granularity=channel sparsity=0.999 on the digits MLP (2 groups of 256)
    with pytest.raises(ConfigError, match="at most 0.9688 of channels"):
        check_channel_budget([256, 256], 0.999, "global", 8)
    cfg = make_cfg("granularity=channel", "method=pdp", "sparsity=0.7")
    with pytest.raises(ConfigError, match="at most 0.6 of channels"):
        build_pruner(cfg, net((16, 24)), steps_per_epoch=2, input_shape=(3,))


def test_layerprune_keeps_a_block():
    check_blocks(3, 2)
    check_blocks(3, None)  # a latency budget: the loop keeps one
    with pytest.raises(ConfigError, match="^method.layers_to_remove=3: the model has 3"):
        check_blocks(3, 3)
    with pytest.raises(ConfigError, match=r"^method=layerprune: Net has no"):
        check_blocks(0, None, "Net")


# --- hardening and baking


def test_a_pruned_weight_that_does_not_bake_to_zero_is_an_error(make_cfg):
    model = net()
    pruner = build_pruner(make_cfg("method=magnitude", "sparsity=0.5"), model, steps_per_epoch=2)
    pruner.set_sparsity(pruner.schedule.target)
    with torch.no_grad():
        original = model[2].parametrizations.weight.original
        original[~model[2].parametrizations.weight[0].mask] = float("nan")
    with pytest.raises(PdpruneError, match="2: 20 pruned weights are not zero after baking"):
        pruner.finalize()


# --- the summary's verdict


def summary_of(layers: list[LayerResult], channels: dict | None = None) -> dict:
    prunable = sum(layer.params for layer in layers)
    return build_summary(
        labels={"model": "m", "dataset": "d", "method": "x", "granularity": "g", "schedule": "s"},
        unit="channels" if channels else "weights", target=0.5,
        achieved=channels["fraction"] if channels else sum(r.pruned for r in layers) / prunable,
        layers=layers, left_dense=[], macs={}, params=(100, 50),
        accuracy={"test": {"top1": 0.5}}, epochs=1, train_time_s=0.0, run_dir=Path("r"),
        input_shape=(3,), num_classes=2, sections={"channels": channels} if channels else None)


def test_summary_says_exact_only_when_exact():
    exact = summary_of([LayerResult("0", (4, 3), 12, 6, 6, 0), LayerResult("2", (10, 4), 40, 20,
                                                                          20, 0)])
    assert exact["sparsity_check"]["exact"] and "budget exact" in format_summary(exact)
    tied = summary_of([LayerResult("0", (4, 3), 12, 6, 5, 2)])
    assert not tied["sparsity_check"]["exact"]
    assert "budget -1 weights (within 2 ties)" in format_summary(tied)
    missed = summary_of([LayerResult("0", (4, 3), 12, 0, 3, 0)])
    assert "budget +3 weights)" in format_summary(missed)


def test_channel_summary_says_rounded_when_blocks_moved_the_budget():
    layers = [LayerResult("0", (16, 3), 48, 24, 24, 0)]
    channels = {"groups": 2, "total": 512, "pruned": 152, "fraction": 152 / 512,
                "expected_pruned": 152, "round_to": 8, "target_pruned": 154}
    rounded = summary_of(layers, channels)
    assert not rounded["sparsity_check"]["exact"]
    assert ("budget rounded to blocks of 8: 0.2969 of channels (152 of 512; the target asks "
            "154)") in format_summary(rounded)
    moved = summary_of(layers, {**channels, "round_to": 1})
    assert "budget moved so that every group keeps a channel: 0.2969" in format_summary(moved)
    exact = summary_of(layers, {**channels, "target_pruned": 152})
    assert exact["sparsity_check"]["exact"] and "budget exact" in format_summary(exact)


def test_pruner_reports_the_unrounded_channel_target(make_cfg):
    # groups of 16 and 24 at 0.3, uniform: round(4.8) + round(7.2) = 12 asked (11 and 17 kept);
    # blocks of 8 keep 8 and 16, and moving either up a block would miss the 28 by as much
    cfg = make_cfg("granularity=channel", "method=magnitude", "method.budget=uniform",
                   "sparsity=0.3")
    pruner = build_pruner(cfg, net((16, 24)), steps_per_epoch=2, input_shape=(3,))
    pruner.finalize()
    summary = pruner.summary_sections()["channels"]
    assert (summary["target_pruned"], summary["expected_pruned"], summary["pruned"]) == (12, 16, 16)


@pytest.mark.slow
def test_cli_refuses_a_target_that_empties_every_weight(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdprune", "sparsity=0.999999",
                           "model.width=0.25", "trainer.threads=1", "trainer.progress=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "sparsity=0.999999: method.budget=global would prune 8192 of 8192" in proc.stderr


def test_check_targets_runs_on_a_meta_model_as_a_preflight_would(make_cfg):
    from pdprune.pruning import check_targets

    with torch.device("meta"):
        model = net((16, 24))
    check_targets(make_cfg("sparsity=0.9"), model, (3,))
    with pytest.raises(ConfigError, match="would prune 432 of 432 .* at most 0.9954"):
        check_targets(make_cfg("sparsity=0.999"), model, (3,))
    with pytest.raises(ConfigError, match="at most 0.6 of channels"):
        check_targets(make_cfg("granularity=channel", "sparsity=0.7"), model, (3,))
    check_targets(make_cfg("granularity=nm", "sparsity=0.999"), model, (3,))  # n >= 1 stays
