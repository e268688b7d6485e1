"""EPI and Early-Bird against pruning at each fixed epoch: accuracy vs training cost
(docs/methods.md#epi, #early-bird).

    python scripts/epi_vs_grid.py --out results/epi_vs_grid
    python scripts/epi_vs_grid.py --model resnet20 --epochs 10 --sparsity 0.5
    python scripts/epi_vs_grid.py --epochs 12 --grid 1,2,3,4,6,8 --epi schedule.max_epoch=9 \
        -- trainer.max_train_batches=40
    python scripts/epi_vs_grid.py --smoke --out /tmp/epi                # seconds: what CI runs

Runs `prune-train -m granularity=channel schedule=oneshot schedule.epoch=1,2,..,E-1` (the grid
search EPI is meant to replace) and `schedule=epi` with the same method, sparsity and epochs,
twice: cut at the grid's MACs (`schedule.cut=macs`, EPI's default: compare at equal cost) and at
its channel count (`schedule.cut=channels`: equal channels, whatever they cost).
And `schedule=early_bird`, EPI's natural rival (the mask of BN scales drawn once it stops
changing), at its defaults (`--eb KEY=VALUE` overrides them).
Training cost is the MACs of forward + backward of the network each epoch trained (dense
before pruning, the pruned one after), relative to training dense throughout; and measured:
the run's wall-clock seconds against its dense epochs' median time for as many epochs.
Writes OUT/epi_vs_grid.{md,csv,png}.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pdprune.sweep import figure, multirun, publish, script_parser, short_run_name, summaries


def row(summary: dict) -> dict:
    cost = summary["training_cost"]
    arm = next(((name, summary[name]) for name in ("epi", "early_bird") if name in summary),
               None)  # a schedule that decides when to prune, or None: the grid
    return {"schedule": f"{arm[0]} (cut={arm[1]['cut']})" if arm else "fixed epoch",
            "prune_after_epoch": cost["dense_epochs"],
            "trigger": arm[1]["trigger"] if arm else "",
            "kept_macs": summary["flops_nonzero"],  # of the network that remains
            "train_cost_vs_dense": round(cost["vs_dense"], 3),
            # wall clock: the run's seconds against its own dense epochs' (or a calibration)
            "train_time_s": round(cost["train_time_s"], 2),
            "train_time_vs_dense": round(cost["measured_vs_dense"], 3),
            "test_top1": round(summary["accuracy"]["test"]["top1"], 4),
            "channels_pruned": round(summary["achieved_sparsity"], 4),
            "run": short_run_name(summary)}


def plot(rows: list[dict], path: Path, title: str) -> None:
    with figure(path, xlabel="training cost (MACs, fraction of dense training)",
                ylabel="test accuracy (top-1)", title=title, legend_size=8) as ax:
        grid = sorted((r["train_cost_vs_dense"], r["test_top1"], r["prune_after_epoch"])
                      for r in rows if r["schedule"] == "fixed epoch")
        if grid:
            xs, ys, _ = zip(*grid, strict=True)
            ax.plot(xs, ys, marker="o", label="prune after a fixed epoch (grid)")
            for x, y, e in grid:
                ax.annotate(f"epoch {e}", (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        for r, color in zip([r for r in rows if r["schedule"] != "fixed epoch"],
                            ("tab:red", "tab:purple", "tab:green"), strict=False):
            ax.scatter([r["train_cost_vs_dense"]], [r["test_top1"]], marker="*", s=200,
                       color=color, zorder=3, label=f"{r['schedule']}: pruned after epoch "
                       f"{r['prune_after_epoch']}, {r['trigger']}")


def main(argv: list[str] | None = None) -> list[dict]:
    p = script_parser(__doc__, "results/epi_vs_grid")
    p.add_argument("--method", default="magnitude", help="how channels are pruned (hard "
                   "top-k at the pruning epoch by default, as in the EPI paper)")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--grid", help="the fixed pruning epochs, e.g. 1,2,4,6 (default: every "
                   "epoch from 1 to epochs-1)")
    p.add_argument("--epi", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for the EPI runs only, e.g. schedule.max_epoch=7")
    p.add_argument("--eb", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for the Early-Bird run only, e.g. schedule.epsilon=0.2")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.dataset, args.epochs = "synthetic", 4
    common = [f"model={args.model}", f"dataset={args.dataset}", f"method={args.method}",
              "granularity=channel", f"sparsity={args.sparsity}", f"trainer.epochs={args.epochs}",
              *args.overrides]
    args.out.mkdir(parents=True, exist_ok=True)

    grid = args.grid or ",".join(map(str, range(1, args.epochs)))
    multirun([*common, "schedule=oneshot", f"schedule.epoch={grid}"], args.out / "grid")
    multirun([*common, "schedule=epi", "schedule.cut=macs,channels", *args.epi], args.out / "epi")
    multirun([*common, "schedule=early_bird", *args.eb], args.out / "early_bird")
    grid = sorted(summaries(args.out / "grid"), key=lambda s: s["training_cost"]["dense_epochs"])
    rows = [row(s) for s in grid] + [row(s) for arm in ("epi", "early_bird")
                                     for s in summaries(args.out / arm)]
    title = f"{args.model} on {args.dataset}, {args.sparsity:.0%} channels: when to prune"
    return publish(rows, args.out / "epi_vs_grid", lambda r, path: plot(r, path, title))


if __name__ == "__main__":
    main()
