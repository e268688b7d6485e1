"""Latency of a saved run's model against its dense architecture.

    python scripts/latency.py runs/2026-11-22/12-15-23_pdp_mlp
    python scripts/latency.py RUN_DIR --batch-sizes 1 64 256 --repeats 100 --json latency.json

Rebuilds the architecture from the run's config (saved in its checkpoint) and summary.json
(input shape, classes), loads its model.safetensors, and times eval-mode forwards (warm-up,
repeats, median) on the CPU and on CUDA when present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf
from safetensors.torch import load_file

from pdprune.export.latency import format_latency, latency_table
from pdprune.models import build_model
from pdprune.train.checkpoint import CHECKPOINT, load_checkpoint


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=Path)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    needed = [args.run_dir / f for f in (CHECKPOINT, "summary.json", "model.safetensors")]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        sys.exit(f"latency.py: error: {args.run_dir} is not a finished run (no {missing[0]})")
    cfg = OmegaConf.create(load_checkpoint(needed[0])["config"])
    cfg.model.checkpoint = None  # the run's own weights replace any starting point
    summary = json.loads(needed[1].read_text())
    shape, classes = tuple(summary["input_shape"]), summary["num_classes"]
    exported = build_model(cfg.model, shape, classes)
    exported.load_state_dict(load_file(str(needed[2])))
    table = latency_table({"dense": build_model(cfg.model, shape, classes), "exported": exported},
                          shape, args.batch_sizes, args.warmup, args.repeats)
    print(f"{cfg.model.name}, input {shape}, {args.repeats} timed runs after {args.warmup}")
    print("\n".join(format_latency(table)))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
