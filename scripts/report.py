"""A report over every run under a folder (a `prune-train -m` sweep, or any folder of runs).

    python scripts/report.py multirun/2026-11-23/16-20-00
    python scripts/report.py runs/ --out results/all_runs --layers-of 3_method=gmp

Writes into OUT (default: DIR/report): report.md (one row per run: model, dataset, method,
granularity, schedule, seed, target and achieved sparsity, test accuracy (hardened masks) and
the last epoch's validation accuracy (the masks training used: soft for PDP), params,
non-zeros, FLOPs (channel runs: of the network that remains, pruned channels removed), CPU
latency ratio, train time; failed and unfinished runs listed with why), report.csv,
accuracy_vs_sparsity.png and accuracy_vs_nonzeros.png (mean and min-max over seeds, one curve
per method) and layer_sparsity.png (one run's per-layer sparsity).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdprune.report import write_report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a multirun folder, a run folder, or any folder")
    p.add_argument("--out", type=Path, help="where to write (default: FOLDER/report)")
    p.add_argument("--layers-of", help="run folder (name or path suffix) whose per-layer "
                   "sparsity to plot (default: the finished run with the highest target)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.folder.is_dir():
        p.error(f"{args.folder}: no such folder")
    try:
        report = write_report(args.folder, args.out or args.folder / "report", args.layers_of)
    except ValueError as exc:
        p.error(str(exc))
    print((args.out or args.folder / "report").joinpath("report.md").read_text())
    print("written: " + ", ".join(str(f) for f in report["files"]))
    return report


if __name__ == "__main__":
    main()
