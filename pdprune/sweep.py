"""Sweeps from scripts: run `prune-train -m` (Hydra multirun) and read back what its runs wrote,
as tables a person reads (Markdown) and a program reads (CSV)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def multirun(overrides: list[str], sweep_dir: Path) -> None:
    """`prune-train -m OVERRIDES` with its runs under `sweep_dir` (one folder per job)."""
    command = [sys.executable, "-m", "pdprune", "-m", *overrides,
               f"hydra.sweep.dir={sweep_dir}", "trainer.progress=false"]
    print("$ prune-train -m " + " ".join(overrides) + f" hydra.sweep.dir={sweep_dir}",
          flush=True)
    subprocess.run(command, check=True)


def summaries(folder: Path) -> list[dict]:
    """The summary.json of every finished run under `folder`, in job order."""
    found = sorted(folder.rglob("summary.json"), key=lambda p: (len(p.parts), str(p)))
    return [json.loads(p.read_text()) for p in found]


def write_tables(rows: list[dict], stem: Path) -> str:
    """`stem`.md and `stem`.csv from rows of one shape; returns the Markdown."""
    if not rows:
        raise ValueError("no rows")
    columns = list(rows[0])
    cell = lambda v: f"{v:.4f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    stem.with_suffix(".md").write_text(markdown)
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return markdown


def publish(rows: list[dict], stem: Path, draw: Callable[[list[dict], Path], None]) -> list[dict]:
    """`stem`.md, .csv and .png (drawn by `draw(rows, path)`); prints the Markdown table."""
    markdown = write_tables(rows, stem)
    draw(rows, stem.with_suffix(".png"))
    print(markdown + f"\nwritten: {stem}.md, .csv, .png")
    return rows


def short_run_name(summary: dict) -> str:
    """`sweep/N` for a multirun job folder `.../sweep/N_overrides` (the overrides are columns)."""
    path = Path(summary["run_dir"])
    return f"{path.parent.name}/{path.name.split('_', 1)[0]}"


def cpu_latency_ratio(summary: dict, batch: str = "64") -> tuple[float, float]:
    """(exported median ms, exported / dense) on the CPU at `batch` from a run's summary."""
    timing = summary["latency"]["cpu"][batch]
    return timing["exported"]["median_ms"], \
        timing["exported"]["median_ms"] / timing["dense"]["median_ms"]


def script_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every comparison script shares: model, dataset, output folder, smoke mode
    and free prune-train overrides for every run."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--smoke", action="store_true", help="synthetic data, a few short epochs")
    p.add_argument("overrides", nargs="*", help="more prune-train overrides, for every run")
    return p


@contextlib.contextmanager
def figure(path: Path, *, xlabel: str, ylabel: str, title: str, legend_size: int | None = None,
           legend: bool = True):
    """A matplotlib axes to draw on, labelled, gridded and saved to `path` (PNG) on exit."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if legend:
            ax.legend(fontsize=legend_size)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
