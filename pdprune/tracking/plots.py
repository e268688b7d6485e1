"""A finished run's own plots, for the loggers that show images: accuracy and sparsity per
epoch, and each pruned layer's sparsity (the report's per-run plot). Into <run>/plots/."""

from __future__ import annotations

from pathlib import Path

from ..report import plot_layers, read_run
from ..sweep import figure
from ..train.metrics import MetricsLog


def run_plots(run_dir: Path, summary: dict) -> list[Path]:
    import matplotlib  # noqa: F401  (ImportError: no plots, the caller says so)

    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    written = []
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    if records:
        written.append(training_curves(records, summary, out / "training.png"))
    if summary.get("layers"):
        plot_layers(read_run(run_dir), out / "layer_sparsity.png")
        written.append(out / "layer_sparsity.png")
    return written


def training_curves(records: list[dict], summary: dict, path: Path) -> Path:
    epochs = [r["epoch"] for r in records]
    title = f"{summary.get('method')}, {summary.get('model')}: accuracy and sparsity per epoch"
    with figure(path, xlabel="epoch", ylabel="fraction", title=title, legend_size=8) as ax:
        ax.plot(epochs, [r["val_top1"] for r in records], marker="o", label="val top-1")
        ax.plot(epochs, [r["train_top1"] for r in records], marker=".", label="train top-1")
        ax.plot(epochs, [r["target_sparsity"] for r in records], linestyle="--",
                label="target sparsity")
        ax.plot(epochs, [r["achieved_sparsity"] for r in records], linestyle=":",
                label="achieved sparsity")
        ax.set_ylim(0, 1.05)
    return path
