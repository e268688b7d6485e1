"""Reports over many runs (a multirun folder, or any folder of runs): one row per run, failed and
unfinished runs included, as Markdown + CSV, and plots of accuracy against sparsity and against
non-zero parameters, and the per-layer sparsity of one run."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .sweep import figure, write_tables

ERROR_FILE = "error.txt"  # written by the CLI into a run folder whose job failed
GROUPS = ("model", "dataset", "method", "granularity", "schedule")


@dataclass
class Run:
    folder: Path
    config: dict  # the composed config Hydra saved (.hydra/config.yaml), or the checkpoint's
    choices: dict[str, str]  # Hydra's config-group choices (e.g. method=gmp, arm=small_dense)
    overrides: dict[str, str]  # the job's key=value overrides of dotted keys (method.budget=...)
    summary: dict | None  # summary.json: None until the run finished
    error: str | None  # error.txt: why the run failed
    epochs_done: int  # epochs recorded in metrics.jsonl

    @property
    def status(self) -> str:
        if self.summary is not None:
            return "ok"
        if self.error is not None:
            return "failed"
        return "incomplete"


def find_runs(root: Path) -> list[Run]:
    """Every run folder under `root` (itself included): one Hydra saved a config into, or one
    with a summary. Sorted by folder, multirun jobs by job number."""
    marks = [*root.rglob(".hydra/config.yaml"), *root.rglob("summary.json")]
    folders = {m.parent.parent if m.parent.name == ".hydra" else m.parent for m in marks}
    folders = {f for f in folders if f.name != "teacher"}  # a distillation teacher's phase
    return [read_run(f) for f in sorted(folders, key=job_order)]


def job_order(folder: Path) -> tuple:
    head = folder.name.split("_", 1)[0]
    return (str(folder.parent), int(head) if head.isdigit() else -1, folder.name)


def read_run(folder: Path) -> Run:
    hydra_dir = folder / ".hydra"
    config = _load_yaml(hydra_dir / "config.yaml")
    choices = (_load_yaml(hydra_dir / "hydra.yaml").get("hydra", {})
               .get("runtime", {}).get("choices", {}))
    summary_file, error_file = folder / "summary.json", folder / ERROR_FILE
    metrics = folder / "metrics.jsonl"
    return Run(folder=folder, config=config,
               choices={k: str(v) for k, v in choices.items()
                        if not k.startswith("hydra/") and v is not None},
               overrides=_key_overrides(hydra_dir / "overrides.yaml"),
               summary=json.loads(summary_file.read_text()) if summary_file.exists() else None,
               error=error_file.read_text().strip() if error_file.exists() else None,
               epochs_done=sum(1 for line in metrics.read_text().splitlines() if line.strip())
               if metrics.exists() else 0)


def _key_overrides(path: Path) -> dict[str, str]:
    """Dotted-key overrides of a job (`method.budget=global`), so a sweep over a key reports
    it like a sweep over a config group; not Hydra's own keys."""
    lines = OmegaConf.load(path) if path.exists() else []
    pairs = (str(line).lstrip("+~").split("=", 1) for line in lines)
    return {key: value for key, value in (p for p in pairs if len(p) == 2)
            if "." in key and not key.startswith("hydra.")}


def _load_yaml(path: Path) -> dict:
    if not path.exists():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _label(run: Run, group: str) -> str:
    if run.summary and group in run.summary:
        return run.summary[group]
    return run.choices.get(group) or str(run.config.get(group, {}).get("name", ""))


def _latency_ratio(summary: dict, runtime: str) -> float | str:
    """Exported / dense median latency in `runtime`, at the largest batch timed ("" if none)."""
    by_batch = summary.get("latency", {}).get(runtime, {})
    if not by_batch or "error" in by_batch:
        return ""
    times = by_batch[max(by_batch, key=int)]
    return round(times["exported"]["median_ms"] / times["dense"]["median_ms"], 3)


def row(run: Run, root: Path) -> dict:
    """The report's row for one run; the measured columns stay empty unless it finished."""
    s, cfg = run.summary or {}, run.config
    cost = s.get("training_cost", {})
    extra = {k: v for k, v in {**run.choices, **run.overrides}.items()
             if k not in GROUPS and k not in ("experiment", "experiment_method")}
    return {
        "run": _short_name(run.folder, root),
        "status": run.status,
        **{group: _label(run, group) for group in GROUPS},
        **({"schedule": "-"} if _label(run, "method") == "dense" else {}),  # nothing scheduled
        **extra,  # more config groups a recipe sweeps (e.g. arm=small_dense)
        "seed": cfg.get("seed", ""),
        "sparsity": cfg.get("sparsity", s.get("target_sparsity", "")),  # as requested
        "target": s.get("target_sparsity", ""),
        "achieved": s.get("achieved_sparsity", ""),
        "unit": s.get("sparsity_unit", ""),
        "test_top1": s.get("accuracy", {}).get("test", {}).get("top1", ""),
        "accuracy_masks": s.get("accuracy_masks", ""),  # test_top1's: hardened (or none)
        # metrics.jsonl's last epoch, measured with the masks training used (PDP: soft)
        "last_val_top1": s.get("last_epoch", {}).get("val_top1", ""),
        "last_epoch_masks": s.get("last_epoch", {}).get("masks", ""),
        "params": s.get("params", ""),
        "nonzero_params": s.get("nonzero_params", ""),
        "flops": s.get("flops_dense", ""),
        "nonzero_flops": s.get("flops_nonzero", ""),
        # zeros, or remaining_network: channel runs count the network left once pruned
        # channels are removed (what the compact export holds)
        "nonzero_counting": s.get("nonzero_counting", ""),
        "cpu_latency_vs_dense": _latency_ratio(s, "cpu"),  # eager, at the largest batch timed
        "compiled_latency_vs_dense": _latency_ratio(s, "cpu_compiled"),  # torch.compile
        "train_time_s": s.get("train_time_s", ""),
        # training cost against training dense for as many epochs: MACs the run's kernels ran,
        # MACs of its non-zero weights (what sparse kernels would run), measured seconds
        "train_macs_vs_dense": cost.get("vs_dense", ""),
        "nonzero_train_macs_vs_dense": cost.get("nonzero_vs_dense", ""),
        "train_time_vs_dense": cost.get("measured_vs_dense", ""),
        "epochs": s.get("epochs", run.epochs_done),
        "note": error_line(run.error) if run.error else
        "" if run.summary else f"{run.epochs_done} epochs done, no summary",
    }


def _short_name(folder: Path, root: Path) -> str:
    """A run's folder under `root`, a sweep job named by its number (its overrides are the
    other columns): `3`, `other_sweep/3`, or `runs/2026-11-23/12-00-00_pdp_mlp`."""
    if folder == root:
        return "."
    relative = folder.relative_to(root)
    head, _, rest = relative.name.partition("_")
    if head.isdigit() and "=" in rest:
        relative = relative.parent / head
    return str(relative)


def error_line(text: str) -> str:
    """The line that says what went wrong: a traceback's last, else the first."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines and lines[0].startswith("Traceback") else (lines or [""])[0]


def series_label(r: dict, rows: list[dict]) -> str:
    """How a run's curve is named: its method, plus whatever else varies across the report
    (granularity, model, a recipe's arm) so different curves never share a name."""
    parts = [r["method"]]
    for key in ["granularity", "model", "dataset", *[k for k in r if k not in _ROW_KEYS]]:
        if len({x.get(key) for x in rows}) > 1 and key != "method":
            parts.append(f"{r.get(key)}")
    return " / ".join(parts)


_ROW_KEYS = {"run", "status", *GROUPS, "seed", "sparsity", "target", "achieved", "unit",
             "test_top1", "accuracy_masks", "last_val_top1", "last_epoch_masks", "params",
             "nonzero_params", "flops", "nonzero_flops", "nonzero_counting", "train_time_s",
             "train_macs_vs_dense", "nonzero_train_macs_vs_dense", "train_time_vs_dense",
             "epochs", "note", "cpu_latency_vs_dense", "compiled_latency_vs_dense"}
# the rest: config groups a recipe sweeps


def _spread(values: list[float]) -> tuple[float, float, float]:
    """mean, and its distance to min and max (error bars that show every seed)."""
    mean = statistics.fmean(values)
    return mean, mean - min(values), max(values) - mean


def plot_vs(rows: list[dict], x_key: str, path: Path, *, xlabel: str, title: str,
            log_x: bool = False) -> None:
    """Test accuracy against `x_key` per series: mean over seeds, bars from min to max."""
    done = [r for r in rows if r["status"] == "ok"]
    series: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in done:
        series[series_label(r, done)][float(r[x_key])].append(float(r["test_top1"]))
    everything = [float(r[x_key]) for r in done]
    span = (max(everything) - min(everything)) or 1.0
    with figure(path, xlabel=xlabel, ylabel="test accuracy (top-1): mean, min-max over seeds",
                title=title, legend_size=8) as ax:
        for i, (name, points) in enumerate(sorted(series.items())):
            xs = sorted(points)
            stats = [_spread(points[x]) for x in xs]
            dodge = (i - (len(series) - 1) / 2) * 0.006  # curves' error bars side by side
            shown = [x * (1 + 3 * dodge) if log_x else x + dodge * span for x in xs]
            ax.errorbar(shown, [m for m, _, _ in stats],
                        yerr=[[lo for _, lo, _ in stats], [hi for _, _, hi in stats]],
                        marker="o", capsize=3, label=name)
        if log_x:
            ax.set_xscale("log")


COST_COLUMNS = {  # the cost table's columns: row key -> heading
    "test_top1": "test top-1", "nonzero_flops": "kept MACs", "nonzero_params": "kept params",
    "train_macs_vs_dense": "train MACs vs dense",
    "nonzero_train_macs_vs_dense": "non-zero train MACs vs dense",
    "train_time_vs_dense": "train time vs dense"}


def cost_table(rows: list[dict]) -> str:
    """Markdown: per series and requested sparsity, the means over seeds of accuracy, what
    the result keeps and what training it cost (empty where no run measured it)."""
    done = [r for r in rows if r["status"] == "ok"]
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for r in done:
        groups[series_label(r, done), float(r["sparsity"])].append(r)
    lines = ["| method | sparsity | runs | " + " | ".join(COST_COLUMNS.values()) + " |",
             "|---" * (len(COST_COLUMNS) + 3) + "|"]
    for (name, sparsity), runs in sorted(groups.items()):
        cells = []
        for key in COST_COLUMNS:
            values = [float(r[key]) for r in runs if r.get(key, "") != ""]
            cells.append("" if not values else _figure(statistics.fmean(values)))
        lines.append(f"| {name} | {sparsity:g} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure(value: float) -> str:
    """Counts in k / M (whole below 1000), fractions to 4 places."""
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}" if value >= 10 else f"{value:.4f}"


def seed_table(rows: list[dict]) -> str:
    """Markdown: test top-1 per requested sparsity (rows) and series (columns), as
    mean (min-max, n runs) over seeds."""
    done = [r for r in rows if r["status"] == "ok"]
    cells: dict[tuple[float, str], list[float]] = defaultdict(list)
    for r in done:
        cells[float(r["sparsity"]), series_label(r, done)].append(float(r["test_top1"]))
    names = sorted({name for _, name in cells})
    lines = ["| sparsity | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for sparsity in sorted({s for s, _ in cells}):
        row = []
        for name in names:
            values = cells.get((sparsity, name))
            row.append("" if not values else f"{statistics.fmean(values):.4f}" if len(values) == 1
                       else f"{statistics.fmean(values):.4f} ({min(values):.4f}-"
                            f"{max(values):.4f}, n={len(values)})")
        lines.append(f"| {sparsity:g} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot_layers(run: Run, path: Path) -> None:
    """Sparsity of every pruned layer of one finished run, in network order."""
    layers, s = run.summary["layers"], run.summary
    title = (f"per-layer sparsity: {s['method']}, {s['model']}, target {s['target_sparsity']:g}"
             f", seed {run.config.get('seed', '?')}")
    with figure(path, xlabel="layer (network order)", ylabel="sparsity (fraction zero or removed)",
                title=title, legend=False) as ax:
        ax.bar(range(len(layers)), [layer["sparsity"] for layer in layers], color="tab:blue")
        ax.axhline(run.summary["weight_sparsity"], color="tab:red", linestyle="--",
                   label=f"whole model {run.summary['weight_sparsity']:.3f}")
        ax.set_xticks(range(len(layers)), [layer["name"] for layer in layers], rotation=90,
                      fontsize=6 if len(layers) > 20 else 8)
        ax.set_ylim(0, 1.12)  # room for the legend above the bars
        ax.legend(fontsize=8, loc="upper left")


def pick_layer_run(runs: list[Run], wanted: str | None) -> Run | None:
    """The run whose layers are plotted: the one named (folder name or path suffix), else the
    finished run with the highest target sparsity."""
    done = [r for r in runs if r.summary and r.summary.get("layers")]
    if wanted:
        for r in done:
            if str(r.folder).endswith(wanted.rstrip("/")) or r.folder.name.startswith(wanted):
                return r
        raise ValueError(f"--layers-of {wanted}: no finished run by that name")
    return max(done, key=lambda r: r.summary["target_sparsity"], default=None)


def write_report(root: Path, out: Path, layers_of: str | None = None,
                 source: str | None = None) -> dict:
    """Everything into `out`: report.md (tables + failed runs), report.csv and the plots.
    `source`: what the heading names (default: `root`). Returns {"rows", "files"}."""
    runs = find_runs(root)
    if not runs:
        raise ValueError(f"{root}: no runs found (no .hydra/config.yaml or summary.json below)")
    out.mkdir(parents=True, exist_ok=True)
    rows = _same_columns([row(run, root) for run in runs])
    markdown = write_tables(rows, out / "report")
    files = [out / "report.md", out / "report.csv"]
    title = _title(rows)
    if any(r["status"] == "ok" for r in rows):
        plot_vs(rows, "sparsity", out / "accuracy_vs_sparsity.png", title=title,
                xlabel="target sparsity (fraction of prunable weights at zero)")
        plot_vs(rows, "nonzero_params", out / "accuracy_vs_nonzeros.png", title=title,
                xlabel="non-zero parameters (channel runs: of the network that remains; "
                "log scale)", log_x=True)
        files += [out / "accuracy_vs_sparsity.png", out / "accuracy_vs_nonzeros.png"]
    chosen = pick_layer_run(runs, layers_of)
    if chosen is not None:
        plot_layers(chosen, out / "layer_sparsity.png")
        files.append(out / "layer_sparsity.png")
    not_ok = [r for r in rows if r["status"] != "ok"]
    lines = [f"# Report: {source or root}", "", f"{len(rows)} runs: "
             + ", ".join(f"{sum(r['status'] == s for r in rows)} {s}"
                         for s in ("ok", "failed", "incomplete")), ""]
    if any(r["status"] == "ok" for r in rows):
        lines += ["## Test top-1: mean (min-max, n) over seeds", "", seed_table(rows)]
        lines += ["## Accuracy and cost: means over seeds", "", COST_NOTE, "", cost_table(rows)]
    lines += ["## Runs", "", COLUMNS_NOTE, "", markdown]
    if not_ok:
        lines += ["## Runs that did not finish", ""]
        lines += [f"- `{run.folder.relative_to(root)}` ({r['status']}): {r['note']}"
                  for run, r in zip(runs, rows, strict=True) if r["status"] != "ok"]
    if chosen is not None:
        lines += ["", f"Per-layer sparsity plotted for `{chosen.folder}`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "files": files}


COLUMNS_NOTE = (
    "test_top1: the final network, masks hardened (`accuracy_masks`; summary.json). "
    "last_val_top1: the last epoch's validation accuracy in metrics.jsonl, measured with the "
    "masks training used (`last_epoch_masks`: soft for PDP until it hardens). "
    "nonzero_params / nonzero_flops count non-zero weights (`nonzero_counting` zeros), or for "
    "channel runs the network that remains with the pruned channels removed "
    "(remaining_network: what the compact export holds).")


COST_NOTE = (
    "kept MACs / params: of the final network (non-zero weights; channel runs: the network "
    "that remains). Train MACs vs dense: forward + backward MACs the run's kernels ran "
    "against training dense for as many epochs (smaller only when units left the network). "
    "Non-zero train MACs: those of each epoch's non-zero weights, what sparse kernels would "
    "run. Train time: measured seconds against the run's own dense epochs (or a timed dense "
    "calibration).")


def _same_columns(rows: list[dict]) -> list[dict]:
    """Every row with every column (runs from different recipes sweep different groups); of
    the extra config groups (optim, trainer, a recipe's arm...) only those that vary."""
    columns = list(dict.fromkeys(key for r in rows for key in r))
    columns = [c for c in columns if c in _ROW_KEYS or len({r.get(c) for r in rows}) > 1]
    return [{key: r.get(key, "") for key in columns} for r in rows]


def _title(rows: list[dict]) -> str:
    models = sorted({r["model"] for r in rows})
    datasets = sorted({r["dataset"] for r in rows})
    done = [r for r in rows if r["status"] == "ok"]
    seeds = len({r["seed"] for r in done})
    return (f"{', '.join(models)} on {', '.join(datasets)}"[:60]
            + f": {len(done)} runs, {seeds} seed{'s' * (seeds != 1)}")
