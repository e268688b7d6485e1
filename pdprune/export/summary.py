"""summary.json and the table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..pruning.pruner import LayerResult
from .latency import format_latency


def build_summary(*, labels: dict[str, str], target: float, layers: list[LayerResult],
                  left_dense: list[str],
                  macs: dict[str, tuple[int, int]], params: tuple[int, int],
                  accuracy: dict[str, dict[str, float]], epochs: int, train_time_s: float,
                  run_dir: Path, input_shape: tuple[int, ...], num_classes: int,
                  latency: dict | None = None) -> dict:
    prunable = sum(layer.params for layer in layers)
    pruned = sum(layer.pruned for layer in layers)
    expected = sum(layer.expected_pruned for layer in layers)
    ties = sum(layer.ties for layer in layers)
    return {
        **labels,
        "run_dir": str(run_dir),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "target_sparsity": target,
        "achieved_sparsity": pruned / max(1, prunable),
        "sparsity_check": {"expected_pruned": expected, "pruned": pruned, "ties": ties,
                           "exact": pruned == expected},
        "left_dense": left_dense,  # prunable by type, but the granularity cannot apply
        # nothing exported yet runs a sparse kernel: zeros are stored and multiplied densely
        "sparse_kernel": None,
        **_group_summary(layers),
        "accuracy": accuracy,
        "params": params[0],
        "nonzero_params": params[1],
        "prunable_params": prunable,
        "prunable_nonzero": prunable - pruned,
        "flops_dense": sum(d for d, _ in macs.values()),  # multiply-accumulates, one sample
        "flops_nonzero": sum(n for _, n in macs.values()),
        **({"latency": latency} if latency else {}),
        "epochs": epochs,
        "train_time_s": round(train_time_s, 2),
        "layers": [
            {"name": layer.name, "shape": list(layer.shape), "params": layer.params,
             "nonzero": layer.params - layer.pruned, "sparsity": layer.sparsity,
             "expected_pruned": layer.expected_pruned, "ties": layer.ties,
             **({"groups": layer.groups, "groups_exact": layer.groups_exact}
                if layer.groups is not None else {}),
             "flops_dense": macs.get(layer.name, (0, 0))[0],
             "flops_nonzero": macs.get(layer.name, (0, 0))[1]}
            for layer in layers
        ],
    }


def _group_summary(layers: list[LayerResult]) -> dict:
    grouped = [layer for layer in layers if layer.groups is not None]
    if not grouped:
        return {}
    return {"groups": {"total": sum(layer.groups for layer in grouped),
                       "exact": sum(layer.groups_exact for layer in grouped)}}


def write_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def format_summary(summary: dict) -> str:
    """A short human-readable table of a summary."""
    rows = [("layer", "shape", "params", "nonzero", "sparsity", "FLOPs", "nz FLOPs")]
    for layer in summary["layers"]:
        rows.append((layer["name"], "x".join(map(str, layer["shape"])), _count(layer["params"]),
                     _count(layer["nonzero"]), f"{layer['sparsity']:.3f}",
                     _count(layer["flops_dense"]), _count(layer["flops_nonzero"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    check = summary["sparsity_check"]
    verdict = "exact" if check["exact"] else f"{check['pruned'] - check['expected_pruned']:+d} " \
        f"(within {check['ties']} ties)"
    acc = summary["accuracy"]
    acc_line = "  ".join(
        f"{split} top1 {m['top1']:.4f}" + (f" top5 {m['top5']:.4f}" if "top5" in m else "")
        for split, m in acc.items())
    head = (f"{summary['method']} on {summary['model']} / {summary['dataset']}"
            f"  (granularity {summary['granularity']}, schedule {summary['schedule']})")
    return "\n".join([
        head, "", *lines, "",
        f"sparsity  target {summary['target_sparsity']:.3f}  achieved "
        f"{summary['achieved_sparsity']:.4f}  ({check['pruned']} of {summary['prunable_params']}"
        f" prunable weights zero; budget {verdict})",
        *([f"groups    {summary['groups']['exact']} of {summary['groups']['total']} groups hold "
           f"exactly the pattern's non-zeros"] if "groups" in summary else []),
        *([f"dense     {', '.join(summary['left_dense'])} (the granularity does not fit)"]
          if summary["left_dense"] else []),
        f"accuracy  {acc_line}",
        f"params    {_count(summary['params'])} total, {_count(summary['nonzero_params'])} non-zero"
        f"   FLOPs (MACs/sample) {_count(summary['flops_dense'])} dense, "
        f"{_count(summary['flops_nonzero'])} non-zero",
        *(["kernels   dense: no sparse kernel is used, the zeros are stored and multiplied"]
          if summary["sparse_kernel"] is None and summary["achieved_sparsity"] > 0 else []),
        *format_latency(summary.get("latency", {})),
        f"time      {summary['train_time_s']:.1f} s training, {summary['epochs']} epochs",
        f"run       {summary['run_dir']}",
    ])
