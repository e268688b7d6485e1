"""summary.json and the table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_text
from .cost import Remaining
from .latency import format_latency
from .results import LayerResult

ZEROS = "zeros"  # non-zeros: the weights that are not zero (unstructured, N:M, dense)
REMAINING = "remaining_network"  # non-zeros: the network left once pruned units are removed


def build_summary(*, labels: dict[str, str], unit: str, target: float, achieved: float,
                  layers: list[LayerResult],
                  left_dense: list[str],
                  macs: dict[str, tuple[int, int]], params: tuple[int, int],
                  accuracy: dict[str, dict[str, float]], epochs: int, train_time_s: float,
                  run_dir: Path, input_shape: tuple[int, ...], num_classes: int,
                  latency: dict | None = None, export: dict | None = None,
                  sections: dict | None = None, remaining: Remaining | None = None,
                  masks: dict[str, str] | None = None, last_epoch: dict | None = None) -> dict:
    """`unit`: what sparsity counts (weights, channels, blocks); `sections`: the pruner's own
    sections of the summary (channels, blocks, epi). `macs` and `params` are the trained
    architecture's, unpruned (dense MACs and parameters) and as hardened (non-zeros).

    `remaining`: for a run that removes units (channels), the network left once they are gone
    (what the compact export holds). Its size is what non-zeros and non-zero MACs count, in the
    totals and per layer: a weight that reads a pruned channel is dead, zero or not.
    `masks`: what masks the accuracies were measured with (mask_labels); `last_epoch`: the
    last epoch's record in metrics.jsonl, whose validation accuracy used the training masks."""
    sections = sections or {}
    prunable = sum(layer.params for layer in layers)
    pruned = sum(layer.pruned for layer in layers)
    rows = [_layer_row(layer, macs, remaining) for layer in layers]
    prunable_nonzero = sum(row["nonzero"] for row in rows)
    expected = sum(layer.expected_pruned for layer in layers)
    ties = sum(layer.ties for layer in layers)
    return {
        **labels,
        "run_dir": str(run_dir),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        # granularity=channel counts channels (a fraction of all coupled channels), layer counts
        # removable blocks, else weights
        "sparsity_unit": unit,
        "target_sparsity": target,
        "achieved_sparsity": achieved,
        "weight_sparsity": (prunable - prunable_nonzero) / max(1, prunable),
        "sparsity_check": sparsity_check(pruned, expected, ties, sections.get("channels")),
        "left_dense": left_dense,  # prunable by type, but the granularity cannot apply
        # whether a kernel that skips zeros ran (2:4 semi-structured on CUDA), or why not
        "sparse_kernel": (export or {}).get("sparse_kernel"),
        **_group_summary(layers),
        **sections,
        "accuracy": accuracy,  # the final network: masks hardened (accuracy_masks)
        **_mask_fields(masks, last_epoch),
        "nonzero_counting": ZEROS if remaining is None else REMAINING,
        "params": params[0],
        "nonzero_params": params[1] if remaining is None else remaining.params,
        "prunable_params": prunable,
        "prunable_nonzero": prunable_nonzero,
        "flops_dense": sum(d for d, _ in macs.values()),  # multiply-accumulates, one sample
        "flops_nonzero": sum(n for _, n in macs.values()) if remaining is None
        else sum(remaining.macs.values()),
        **({"export": export} if export else {}),
        **({"latency": latency} if latency else {}),
        "epochs": epochs,
        "train_time_s": round(train_time_s, 2),
        "layers": rows,
    }


def _layer_row(layer: LayerResult, macs: dict[str, tuple[int, int]],
               remaining: Remaining | None) -> dict:
    """One layer of the summary. Counted by the remaining network, a conv keeps the rows of
    its kept output channels and the columns of its kept input channels; `pruned` then is
    what its own channel mask zeroed (the budget's count)."""
    dense, nonzero_macs = macs.get(layer.name, (0, 0))
    nonzero, sparsity = layer.params - layer.pruned, layer.sparsity
    if remaining is not None:
        nonzero = remaining.weights.get(layer.name, 0)
        nonzero_macs = remaining.macs.get(layer.name, 0)
        sparsity = (layer.params - nonzero) / layer.params
    return {"name": layer.name, "shape": list(layer.shape), "params": layer.params,
            "nonzero": nonzero, "sparsity": sparsity,
            **({"pruned": layer.pruned} if remaining is not None else {}),
            "expected_pruned": layer.expected_pruned, "ties": layer.ties,
            **({"groups": layer.groups, "groups_exact": layer.groups_exact}
               if layer.groups is not None else {}),
            "flops_dense": dense, "flops_nonzero": nonzero_macs}


def _mask_fields(masks: dict[str, str] | None, last_epoch: dict | None) -> dict:
    fields = {"accuracy_masks": masks["final"]} if masks else {}
    if last_epoch is not None:
        fields["last_epoch"] = {"epoch": last_epoch["epoch"],
                                "val_top1": last_epoch.get("val_top1"),
                                "masks": masks["last_epoch"] if masks else None}
    return fields


def sparsity_check(pruned: int, expected: int, ties: int, channels: dict | None = None) -> dict:
    """Achieved vs asked for: `exact` only when the hardened masks zeroed exactly the budget's
    weights and, for channels, exactly the target's channels before rounding to blocks."""
    check = {"expected_pruned": expected, "pruned": pruned, "ties": ties,
             "exact": pruned == expected}
    if channels:
        target = channels.get("target_pruned", channels["expected_pruned"])
        check["channels"] = {"target_pruned": target, "pruned": channels["pruned"],
                             "total": channels["total"], "round_to": channels["round_to"]}
        check["exact"] = check["exact"] and channels["pruned"] == target
    return check


def budget_verdict(check: dict) -> str:
    """How the result compares with the budget, in words: "exact" only when it is."""
    if check["exact"]:
        return "exact"
    parts = []
    c = check.get("channels")
    if c and c["pruned"] != c["target_pruned"]:
        how = f"rounded to blocks of {c['round_to']}" if c["round_to"] > 1 else \
            "moved so that every group keeps a channel"
        parts.append(f"{how}: {c['pruned'] / max(1, c['total']):.4f} of channels ({c['pruned']} "
                     f"of {c['total']}; the target asks {c['target_pruned']})")
    diff = check["pruned"] - check["expected_pruned"]
    if diff:
        within = f" (within {check['ties']} ties)" if abs(diff) <= check["ties"] else ""
        parts.append(f"{diff:+d} weights{within}")
    return "; ".join(parts)


def _group_summary(layers: list[LayerResult]) -> dict:
    grouped = [layer for layer in layers if layer.groups is not None]
    if not grouped:
        return {}
    return {"groups": {"total": sum(layer.groups for layer in grouped),
                       "exact": sum(layer.groups_exact for layer in grouped)}}


def _channel_lines(summary: dict) -> list[str]:
    lines = []
    if "channels" in summary:
        c = summary["channels"]
        lines.append(f"channels  {c['pruned']} of {c['total']} pruned ({c['fraction']:.3f}) in "
                     f"{c['groups']} coupled groups")
    if "heads" in summary:  # transformers: attention heads kept per layer
        h = summary["heads"]
        per_layer = ", ".join(f"{kept}/{total}" for kept, total in h["per_layer"].values())
        lines.append(f"heads     {h['kept']} of {h['total']} kept; per layer {per_layer}")
    compact = summary.get("export", {}).get("compact")
    if compact:
        lines.append(
            f"compact   {_count(compact['params'])} params "
            f"({compact['params'] / summary['params']:.3f}x), "
            f"{_count(compact['flops'])} MACs/sample "
            f"({compact['flops'] / max(1, summary['flops_dense']):.3f}x); outputs equal the "
            f"masked model's to {compact['max_abs_diff_vs_masked']:.1e} in fp64, "
            f"{compact['max_abs_diff_vs_masked_fp32']:.1e} in fp32")
    if "onnx_max_abs_diff" in summary.get("export", {}):
        lines.append(f"onnx      onnxruntime matches torch to "
                     f"{summary['export']['onnx_max_abs_diff']:.1e}")
    return lines


def _block_lines(summary: dict) -> list[str]:
    if "blocks" not in summary:
        return []
    b = summary["blocks"]
    lines = [f"blocks    {len(b['removed'])} of {b['removable']} removable blocks removed by "
             f"{b['criterion']}: {b['blocks_before']} -> {b['blocks_after']} blocks"
             + (f" ({', '.join(b['removed'])})" if b["removed"] else "")]
    program = summary.get("export", {}).get("program")
    if program:
        lines.append(f"exported  {program['file']}: {program['weight_layers']} conv/linear "
                     "layers, outputs equal the in-memory model's to "
                     f"{program['max_abs_diff_vs_model']:.1e}")
    return lines


def _epi_lines(summary: dict) -> list[str]:
    lines = []
    if "epi" in summary:
        e = summary["epi"]
        values = " ".join("-" if v is None else f"{v:.3f}" for v in e["values"])
        when = "never" if e["trigger_epoch"] is None else \
            f"after epoch {e['trigger_epoch']} ({e['trigger']})"
        lines.append(f"epi       pruned {when}; EPI per epoch: {values} (tau {e['tau']:.3f})")
    if "early_bird" in summary:
        b = summary["early_bird"]
        values = " ".join("-" if v is None else f"{v:.3f}" for v in b["distances"])
        when = "never" if b["trigger_epoch"] is None else \
            f"after epoch {b['trigger_epoch']} ({b['trigger']})"
        lines.append(f"early-bird pruned {when}; mask distance per epoch: {values} "
                     f"(epsilon {b['epsilon']})")
    if "training_cost" in summary:
        c = summary["training_cost"]
        lines.append(f"training  {_count(c['train_macs'])} MACs ({c['vs_dense']:.3f}x of dense "
                     "training for as many epochs)")
    return lines


def _kernel_lines(summary: dict) -> list[str]:
    kernel = summary["sparse_kernel"]
    if not kernel or summary["achieved_sparsity"] == 0:
        return []
    if not kernel["used"]:
        return [f"kernels   {kernel['reason']}"]
    speedups = ", ".join(f"{t['speedup']:.2f}x at batch {b}" for b, t in kernel["latency"].items())
    return [f"kernels   2:4 semi-structured ({kernel['device']}) on {len(kernel['layers'])} Linear "
            f"layers: {speedups} vs dense bf16"]


def write_summary(path: Path, summary: dict) -> None:
    """Replaces the file whole: a write that fails (a full disk) keeps the previous summary."""
    write_text(path, json.dumps(summary, indent=2) + "\n")


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def format_summary(summary: dict) -> str:
    """A short human-readable table of a summary."""
    removed = summary.get("nonzero_counting") == REMAINING
    rows = [("layer", "shape", "params", "kept" if removed else "nonzero", "sparsity", "FLOPs",
             "kept FLOPs" if removed else "nz FLOPs")]
    for layer in summary["layers"]:
        rows.append((layer["name"], "x".join(map(str, layer["shape"])), _count(layer["params"]),
                     _count(layer["nonzero"]), f"{layer['sparsity']:.3f}",
                     _count(layer["flops_dense"]), _count(layer["flops_nonzero"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    check = summary["sparsity_check"]
    verdict = budget_verdict(check)
    acc = summary["accuracy"]
    acc_line = "  ".join(
        f"{split} top1 {m['top1']:.4f}" + (f" top5 {m['top5']:.4f}" if "top5" in m else "")
        + (f" F1 {m['f1']:.4f}" if "f1" in m else "")
        for split, m in acc.items())
    head = (f"{summary['method']} on {summary['model']} / {summary['dataset']}"
            f"  (granularity {summary['granularity']}, schedule {summary['schedule']})")
    return "\n".join([
        head, "", *lines, "",
        f"sparsity  target {summary['target_sparsity']:.3f}  achieved "
        f"{summary['achieved_sparsity']:.4f} of {summary['sparsity_unit']}  ({check['pruned']} "
        f"of {summary['prunable_params']} prunable weights "
        f"{'in pruned output channels' if removed else 'zero'}; budget {verdict})",
        *([f"groups    {summary['groups']['exact']} of {summary['groups']['total']} groups hold "
           f"exactly the pattern's non-zeros"] if "groups" in summary else []),
        *([f"dense     {', '.join(summary['left_dense'])} (the granularity does not fit)"]
          if summary["left_dense"] else []),
        f"accuracy  {acc_line}{_masks_note(summary)}",
        *_last_epoch_lines(summary),
        *_size_lines(summary, removed),
        *_channel_lines(summary),
        *_block_lines(summary),
        *_epi_lines(summary),
        *_kernel_lines(summary),
        *format_latency(summary.get("latency", {})),
        f"time      {summary['train_time_s']:.1f} s training, {summary['epochs']} epochs"
        + _parallel_note(summary.get("distributed")),
        f"run       {summary['run_dir']}",
    ])


def _masks_note(summary: dict) -> str:
    masks = summary.get("accuracy_masks", "none")
    return "" if masks == "none" else f"  ({masks} masks)"


def _last_epoch_lines(summary: dict) -> list[str]:
    """The last epoch's validation accuracy when its masks were not the final ones (PDP's soft
    masks): metrics.jsonl and the epoch log show it, and it differs from the line above."""
    last = summary.get("last_epoch")
    if not last or last["masks"] != "soft" or last["val_top1"] is None:
        return []
    return [f"          last epoch ({last['epoch']}) val top1 {last['val_top1']:.4f} with soft "
            "masks (metrics.jsonl)"]


def _size_lines(summary: dict, removed: bool) -> list[str]:
    flops = f"FLOPs (MACs/sample) {_count(summary['flops_dense'])} dense, "
    if not removed:
        return [f"params    {_count(summary['params'])} total, "
                f"{_count(summary['nonzero_params'])} non-zero   {flops}"
                f"{_count(summary['flops_nonzero'])} non-zero"]
    return [f"params    {_count(summary['params'])} total, {_count(summary['nonzero_params'])} "
            f"kept ({summary['nonzero_params'] / max(1, summary['params']):.3f}x)   {flops}"
            f"{_count(summary['flops_nonzero'])} kept "
            f"({summary['flops_nonzero'] / max(1, summary['flops_dense']):.3f}x)",
            "          kept: the network that remains with the pruned channels removed (what "
            "the compact export holds)"]


def _parallel_note(distributed: dict | None) -> str:
    if not distributed:
        return ""
    return (f" on {distributed['world_size']} data-parallel ranks ({distributed['backend']}; "
            f"ranks differ by {distributed['max_difference_across_ranks']:.3g})")
