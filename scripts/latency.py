"""Latency of a saved run's model against its dense architecture.

    python scripts/latency.py runs/2026-11-22/12-15-23_pdp_mlp
    python scripts/latency.py RUN_DIR --batch-sizes 1 64 256 --repeats 100 --json latency.json

Rebuilds the architecture from the run's config (saved in its checkpoint) and summary.json
(input shape, classes), loads its model.safetensors (or, for an export.compact run, its smaller
compact.pt2 program), and times eval-mode forwards (warm-up, repeats, median) on the CPU and
on CUDA when present, compiled by torch.compile on the CPU (--no-compile skips it), and for a
run that exported ONNX, both models in onnxruntime as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from pdprune.export.exporter import export_latency
from pdprune.measure.latency import format_latency
from pdprune.models import build_model
from pdprune.train.checkpoint import CHECKPOINT, load_checkpoint


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=Path)
    p.add_argument("--no-compile", action="store_true",
                   help="skip the torch.compile timings (one compile per model and batch size)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    needed = [args.run_dir / f for f in (CHECKPOINT, "summary.json", "model.safetensors")]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        sys.exit(f"latency.py: error: {args.run_dir} is not a finished run (no {missing[0]})")
    cfg = OmegaConf.create(load_checkpoint(needed[0])["config"])
    cfg.model.checkpoint = None  # the run's own weights replace any starting point
    summary = json.loads(needed[1].read_text())
    shape, classes = tuple(summary["input_shape"]), summary["num_classes"]
    # export.compact / layerprune: the smaller model, as the torch.export program
    program = next((args.run_dir / f for f in ("compact.pt2", "model.pt2")
                    if (args.run_dir / f).is_file()), args.run_dir / "compact.pt2")
    if program.is_file():
        exported = torch.export.load(str(program)).module()
    else:
        exported = build_model(cfg.model, shape, classes)
        exported.load_state_dict(load_file(str(needed[2])))
    # export.onnx: onnxruntime rows too, for the file of the model timed in torch
    onnx_file = args.run_dir / ("compact.onnx" if program.is_file() else "model.onnx")
    table = export_latency(build_model(cfg.model, shape, classes), exported,
                           torch.randn(2, *shape), args.batch_sizes, args.warmup, args.repeats,
                           onnx_file if onnx_file.is_file() else None,
                           compiled=not args.no_compile)
    source = program.name if program.is_file() else needed[2].name
    print(f"{cfg.model.name}, input {shape}, exported model from {source}, {args.repeats} timed "
          f"runs after {args.warmup}")
    print("\n".join(format_latency(table)))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
