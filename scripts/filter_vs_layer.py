"""Filter (channel) pruning vs layer pruning of the same model, matched at equal measured latency
(LayerPrune's question; docs/methods.md#layerprune).

    python scripts/filter_vs_layer.py --out results/filter_vs_layer
    python scripts/filter_vs_layer.py --model resnet56 --layers 3 6 9 --epochs 5
    python scripts/filter_vs_layer.py --smoke --out /tmp/fvl        # seconds: what CI runs

1. `prune-train -m method=layerprune method.layers_to_remove=K1,K2,..`: each run measures its
   exported (shallower) model's CPU latency at batch 64 against the unpruned model's.
2. The channel sparsity with the same latency ratio: compact models of the untrained network at
   a grid of sparsities are timed (latency depends on the channel counts, not the weights; the
   uniform budget makes the counts a function of the sparsity), and interpolated.
3. `prune-train -m granularity=channel method=pdp method.budget=uniform sparsity=S1,S2,..
   export.compact=true export.latency=true`: the filter-pruned models, trained as long.
Writes OUT/filter_vs_layer.{md,csv,png}: accuracy against measured latency for both, and each
run's measured training time against dense training (summary.json training_cost).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pdprune.config import CONFIG_DIR
from pdprune.errors import ConfigError
from pdprune.export.compact import compact_model
from pdprune.measure.latency import compare_latency
from pdprune.models import build_model
from pdprune.pruning import build_pruner
from pdprune.sweep import (
    cpu_latency_ratio,
    figure,
    multirun,
    publish,
    script_parser,
    short_run_name,
    summaries,
)

LATENCY_BATCH = 64
GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def channel_latency_curve(common: list[str], shape: tuple[int, ...], classes: int,
                          sparsities: list[float], repeats: int) -> list[tuple[float, float]]:
    """(sparsity, compact / dense CPU latency at batch 64) for uniform channel budgets."""
    curve = []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for s in sparsities:
            cfg = compose("train", overrides=[*common, "granularity=channel", "method=magnitude",
                                              "method.budget=uniform", f"sparsity={s}"])
            torch.manual_seed(0)
            dense, model = (build_model(cfg.model, shape, classes) for _ in range(2))
            model.load_state_dict(dense.state_dict())
            try:
                pruner = build_pruner(cfg, model, steps_per_epoch=1, input_shape=shape)
            except ConfigError as exc:  # more than the coupled groups can give (round_to)
                print(f"  channel sparsity {s:.2f}: skipped ({exc.reason})", flush=True)
                continue
            pruner.set_sparsity(s)
            pruner.finalize()
            compact, _ = compact_model(model, pruner.export_plan().removed_units,
                                       torch.randn(2, *shape))
            timing = compare_latency({"dense": dense, "compact": compact}, shape, LATENCY_BATCH,
                                     torch.device("cpu"), warmup=3, repeats=repeats)
            ratio = timing["compact"]["median_ms"] / timing["dense"]["median_ms"]
            print(f"  channel sparsity {s:.2f}: latency {ratio:.3f}x", flush=True)
            curve.append((s, ratio))
    return curve


def sparsity_at(curve: list[tuple[float, float]], ratio: float) -> float:
    """The sparsity whose latency ratio is `ratio`, interpolated on the (monotone) curve."""
    points = sorted(curve, key=lambda p: -p[1])  # latency falling as sparsity rises
    if ratio >= points[0][1]:
        return points[0][0]
    for (s0, r0), (s1, r1) in itertools.pairwise(points):
        if r1 <= ratio <= r0:
            return s0 + (s1 - s0) * (r0 - ratio) / max(r0 - r1, 1e-12)
    return points[-1][0]


def row(kind: str, setting: str, summary: dict) -> dict:
    ms, ratio = cpu_latency_ratio(summary, str(LATENCY_BATCH))
    params = summary.get("export", {}).get("compact", {}).get("params", summary["params"])
    return {"pruning": kind, "setting": setting, "params": params, "cpu_ms_b64": round(ms, 2),
            "latency_vs_dense": round(ratio, 3),
            # wall clock: the run's seconds against its own dense epochs' (or a calibration)
            "train_time_s": round(summary["training_cost"]["train_time_s"], 2),
            "train_time_vs_dense": round(summary["training_cost"]["measured_vs_dense"], 3),
            "test_top1": round(summary["accuracy"]["test"]["top1"], 4),
            "run": short_run_name(summary)}


def plot(rows: list[dict], path: Path, title: str) -> None:
    with figure(path, xlabel=f"CPU latency vs unpruned model (batch {LATENCY_BATCH}, median)",
                ylabel="test accuracy (top-1)", title=title) as ax:
        for kind, marker in (("layer", "o"), ("filter", "s")):
            points = sorted((r["latency_vs_dense"], r["test_top1"], r["setting"]) for r in rows
                            if r["pruning"] == kind)
            if points:
                xs, ys, _ = zip(*points, strict=True)
                ax.plot(xs, ys, marker=marker, label=f"{kind} pruning")
                for x, y, label in points:
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4),
                                fontsize=8)


def main(argv: list[str] | None = None) -> list[dict]:
    p = script_parser(__doc__, "results/filter_vs_layer")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6],
                   help="blocks to remove, one layer-pruning run each")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per latency measurement")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.dataset, args.epochs, args.layers, args.repeats = "synthetic", 2, [1, 3], 3
    common = [f"model={args.model}", f"dataset={args.dataset}", *args.overrides]
    train = [*common, f"trainer.epochs={args.epochs}",
             f"export.latency_batch_sizes=[1,{LATENCY_BATCH}]",
             f"export.latency_repeats={args.repeats}",
             "export.latency_compiled=false"]  # matched on eager latency, as the curve is
    args.out.mkdir(parents=True, exist_ok=True)

    multirun([*train, "method=layerprune",
              "method.layers_to_remove=" + ",".join(map(str, args.layers))], args.out / "layer")
    layer_runs = sorted(summaries(args.out / "layer"), key=lambda s: len(s["blocks"]["removed"]))
    shape, classes = tuple(layer_runs[0]["input_shape"]), layer_runs[0]["num_classes"]

    print("timing compact channel-pruned models (untrained weights) to match latencies:")
    curve = channel_latency_curve(common, shape, classes, GRID, args.repeats)
    matched = [round(sparsity_at(curve, cpu_latency_ratio(s)[1]), 3) for s in layer_runs]
    multirun([*train, "granularity=channel", "method=pdp", "method.budget=uniform",
              "export.compact=true", "export.latency=true",
              "sparsity=" + ",".join(map(str, sorted(set(matched))))], args.out / "filter")
    filter_runs = summaries(args.out / "filter")

    rows = [row("layer", f"-{len(s['blocks']['removed'])} blocks", s) for s in layer_runs]
    rows += [row("filter", f"{s['target_sparsity']:.3f} channels", s) for s in filter_runs]
    title = f"{args.model} on {args.dataset}: filter vs layer pruning"
    return publish(rows, args.out / "filter_vs_layer", lambda r, path: plot(r, path, title))


if __name__ == "__main__":
    main()
