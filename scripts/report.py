"""A report over every run under a folder (a `prune-train -m` sweep, or any folder of runs), or
over the runs logged to an MLflow store (logger=mlflow).

    python scripts/report.py multirun/2026-11-23/16-20-00
    python scripts/report.py runs/ --out results/all_runs --layers-of 3_method=gmp
    python scripts/report.py --mlflow sqlite:///mlruns.db --experiment multirun/2026-11-23/16-20-00

Writes into OUT (default: DIR/report): report.md (one row per run: model, dataset, method,
granularity, schedule, seed, target and achieved sparsity, test accuracy (hardened masks) and
the last epoch's validation accuracy (the masks training used: soft for PDP), params,
non-zeros, FLOPs (channel runs: of the network that remains, pruned channels removed), CPU
latency ratio, train time; failed and unfinished runs listed with why), report.csv,
accuracy_vs_sparsity.png and accuracy_vs_nonzeros.png (mean and min-max over seeds, one curve
per method) and layer_sparsity.png (one run's per-layer sparsity). With --mlflow, the runs'
logged files are downloaded into OUT/runs (default OUT: ./mlflow_report) and reported the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdprune.errors import PdpruneError
from pdprune.report import write_report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, nargs="?",
                   help="a multirun folder, a run folder, or any folder")
    p.add_argument("--mlflow", metavar="URI", help="read the runs from this MLflow tracking "
                   "store instead (e.g. sqlite:///mlruns.db)")
    p.add_argument("--experiment", help="with --mlflow: only this experiment (a sweep's is named "
                   "after its folder; default: every experiment with pdprune runs)")
    p.add_argument("--out", type=Path, help="where to write (default: FOLDER/report, or "
                   "./mlflow_report with --mlflow)")
    p.add_argument("--layers-of", help="run folder (name or path suffix) whose per-layer "
                   "sparsity to plot (default: the finished run with the highest target)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if (args.folder is None) == (args.mlflow is None):
        p.error("give a folder or --mlflow URI (one of them)")
    if args.experiment and not args.mlflow:
        p.error("--experiment goes with --mlflow")
    out = args.out or (Path("mlflow_report") if args.mlflow else args.folder / "report")
    try:
        if args.mlflow:
            from pdprune.tracking.mlflow_runs import download_runs
            download_runs(args.mlflow, args.experiment, out / "runs")
            root, source = out / "runs", args.mlflow + (f" ({args.experiment})"
                                                       if args.experiment else "")
        elif not args.folder.is_dir():
            p.error(f"{args.folder}: no such folder")
        else:
            root, source = args.folder, None
        report = write_report(root, out, args.layers_of, source)
    except (ValueError, PdpruneError) as exc:
        p.error(str(exc))
    print(out.joinpath("report.md").read_text())
    print("written: " + ", ".join(str(f) for f in report["files"]))
    return report


if __name__ == "__main__":
    main()
