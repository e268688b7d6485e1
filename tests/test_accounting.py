"""One accounting (issue 19): a channel run counts its non-zeros and MACs by the network that
remains once the pruned channels are removed (what the compact export holds), everywhere in the
summary; a run with zeros inside dense layers counts zeros, as before. And each reported
accuracy says which masks it was measured with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pdprune.measure import format_summary, layer_macs, parameter_counts
from pdprune.models import build_model
from pdprune.pruning.build import mask_labels
from pdprune.run import run

from .conftest import TINY

CHANNELS = ("model=resnet20", "dataset=synthetic", "granularity=channel",
            "granularity.round_to=1", "method=gmp", "sparsity=0.5", "trainer.epochs=2",
            "schedule.start_epoch=0", "schedule.end_epoch=1", "trainer.max_train_batches=2",
            "trainer.progress=false", "trainer.threads=1")


def last_record(folder: Path) -> dict:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])


def dense_positions(summary: dict, model_cfg) -> dict[str, float]:
    """Output positions per conv / linear layer (MACs per weight element): channel pruning
    keeps every layer's spatial size."""
    dense = build_model(model_cfg, tuple(summary["input_shape"]), summary["num_classes"])
    macs = layer_macs(dense, tuple(summary["input_shape"]), torch.device("cpu"))
    weights = dict(dense.named_parameters())
    return {name: d / weights[f"{name}.weight"].numel() for name, (d, _) in macs.items()}


@pytest.mark.slow
def test_a_channel_run_counts_the_network_that_remains(make_cfg, tmp_path):
    # compacted training and the compact export: compare with the exported file's tensors
    cfg = make_cfg(*CHANNELS, "export.compact=true")
    summary = run(cfg, tmp_path / "compact")
    compact = load_file(tmp_path / "compact" / "compact.safetensors")
    dense = build_model(cfg.model, tuple(summary["input_shape"]), summary["num_classes"])
    names = [name for name, _ in dense.named_parameters()]  # the file also holds BN buffers
    assert summary["nonzero_counting"] == "remaining_network"
    assert summary["params"] == parameter_counts(dense)[0]  # the dense architecture
    assert summary["nonzero_params"] == sum(compact[n].numel() for n in names)
    assert summary["nonzero_params"] == summary["export"]["compact"]["params"]
    positions = dense_positions(summary, cfg.model)
    kept_macs = {name: round(compact[f"{name}.weight"].numel() * p)
                 for name, p in positions.items()}
    assert summary["flops_nonzero"] == sum(kept_macs.values())
    assert summary["flops_nonzero"] == summary["export"]["compact"]["flops"]
    # a conv loses the rows of its own pruned channels and the columns of its pruned inputs:
    # well under half of it is left at half the channels
    assert summary["flops_nonzero"] < 0.3 * summary["flops_dense"]
    for layer in summary["layers"]:
        kept = compact[f"{layer['name']}.weight"].numel()
        assert layer["nonzero"] == kept and layer["flops_nonzero"] == kept_macs[layer["name"]]
        assert layer["sparsity"] == pytest.approx(1 - kept / layer["params"])
        assert layer["nonzero"] <= layer["params"] - layer["pruned"]  # its mask's rows and more
    assert summary["prunable_nonzero"] == sum(layer["nonzero"] for layer in summary["layers"])
    assert summary["weight_sparsity"] == pytest.approx(
        1 - summary["prunable_nonzero"] / summary["prunable_params"])
    table = format_summary(summary)
    share = summary["nonzero_params"] / summary["params"]
    assert "kept FLOPs" in table and f"kept ({share:.3f}x)" in table

    # masked to the end, no compact export: the compact model is built only to be counted,
    # and the counts match (they depend on how many channels each group lost, not which)
    masked = run(make_cfg(*CHANNELS, "trainer.compact_when_final=false"), tmp_path / "masked")
    assert not (tmp_path / "masked" / "compact.safetensors").exists()
    for key in ("params", "nonzero_params", "prunable_nonzero", "flops_dense", "flops_nonzero"):
        assert masked[key] == summary[key], key
    assert [(x["nonzero"], x["flops_nonzero"]) for x in masked["layers"]] == \
        [(x["nonzero"], x["flops_nonzero"]) for x in summary["layers"]]


def test_an_unstructured_run_counts_zeros_as_before(make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "method=gmp", "sparsity=0.5")
    summary = run(cfg, tmp_path)
    model = build_model(cfg.model, tuple(summary["input_shape"]), summary["num_classes"])
    model.load_state_dict(load_file(tmp_path / "model.safetensors"))
    macs = layer_macs(model, tuple(summary["input_shape"]), torch.device("cpu"))
    assert summary["nonzero_counting"] == "zeros"
    assert (summary["params"], summary["nonzero_params"]) == parameter_counts(model)
    assert summary["nonzero_params"] < summary["params"]
    assert summary["flops_nonzero"] == sum(n for _, n in macs.values())
    weights = dict(model.named_parameters())
    for layer in summary["layers"]:
        weight = weights[f"{layer['name']}.weight"]
        assert layer["nonzero"] == int(torch.count_nonzero(weight))
        assert layer["flops_nonzero"] == macs[layer["name"]][1]
        assert "pruned" not in layer
    assert summary["weight_sparsity"] == summary["sparsity_check"]["pruned"] / \
        summary["prunable_params"]
    assert "nz FLOPs" in format_summary(summary)


@pytest.mark.parametrize(("method", "last_masks"), [("pdp", "soft"), ("gmp", "hard")])
def test_accuracies_say_which_masks_measured_them(make_cfg, tmp_path, method, last_masks):
    summary = run(make_cfg(*TINY, f"method={method}", "sparsity=0.5"), tmp_path)
    last = last_record(tmp_path)
    assert summary["accuracy_masks"] == "hardened"
    assert summary["last_epoch"] == {"epoch": last["epoch"], "val_top1": last["val_top1"],
                                     "masks": last_masks}
    table = format_summary(summary)
    assert "(hardened masks)" in table
    soft_line = f"last epoch ({last['epoch']}) val top1 {last['val_top1']:.4f} with soft masks"
    assert (soft_line in table) == (last_masks == "soft")


def test_mask_labels():
    assert mask_labels("pdp") == {"final": "hardened", "last_epoch": "soft"}
    assert mask_labels("pdp", "ramp_end") == {"final": "hardened", "last_epoch": "hard"}
    assert mask_labels("magnitude") == {"final": "hardened", "last_epoch": "hard"}
    assert mask_labels("dense") == mask_labels("layerprune") == {"final": "none",
                                                                  "last_epoch": "none"}
