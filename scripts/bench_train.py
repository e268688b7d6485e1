"""What pruning costs per training step: dense vs GMP vs PDP, timed in one process.

    python scripts/bench_train.py --model resnet18 --batch-size 128 --input 32
    python scripts/bench_train.py --model resnet18 --device cuda --json bench.json
    python scripts/bench_train.py --model resnet18 --granularity channel --sparsity 0.5

Each method gets the trainer prune-train builds (same model adaptation, optimizer, AMP,
channels_last, optional torch.compile), with its masks at the target sparsity as they are late
in training. Steps of the three methods are interleaved round-robin, so a change in machine
speed hits all of them alike; each step is timed alone (CUDA-synchronised on a GPU) and the
median is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pdprune.config import CONFIG_DIR
from pdprune.run import build_trainer

METHODS = ("dense", "gmp", "pdp")
LATE_IN_TRAINING = 10**9  # a step past every schedule's end: masks sit at the final target


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--input", type=int, default=32, help="image side in pixels")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--granularity", default="unstructured",
                   choices=["unstructured", "nm", "channel"], help="nm: the default 2:4")
    p.add_argument("--steps", type=int, default=10, help="timed steps per method per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def build(method: str, args: argparse.Namespace, run_dir: Path):
    overrides = [
        f"model={args.model}", f"method={method}", f"sparsity={args.sparsity}",
        f"granularity={args.granularity}",
        "dataset=synthetic", f"dataset.size={args.input}", f"dataset.channels={args.channels}",
        f"dataset.num_classes={args.classes}", f"dataset.batch_size={args.batch_size}",
        f"dataset.num_train={args.batch_size}", "dataset.num_val=2", "dataset.num_test=2",
        f"trainer.device={args.device}", f"trainer.amp={args.amp}",
        f"trainer.compile={args.compile}", "trainer.progress=false",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    trainer = build_trainer(cfg, run_dir)
    trainer.state.step = LATE_IN_TRAINING
    trainer.pruning.before_step(trainer.state.step)  # PDP: budgets from this model's weights
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(trainer, batch, n: int) -> list[float]:
    times = []
    for _ in range(n):
        sync(trainer.device)
        start = time.perf_counter()
        trainer.train_step(*batch)
        sync(trainer.device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {m: build(m, args, Path(tmp) / m) for m in METHODS}
    device = trainers["dense"].device
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, args.channels, args.input, args.input, generator=gen)
    y = torch.randint(args.classes, (args.batch_size,), generator=gen)
    batches = {m: t.to_device(x, y) for m, t in trainers.items()}

    times: dict[str, list[float]] = {m: [] for m in METHODS}
    peak_mb: dict[str, float] = {}
    for m, t in trainers.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timed_steps(t, batches[m], args.warmup)
        if device.type == "cuda":
            peak_mb[m] = torch.cuda.max_memory_allocated(device) / 2**20
    for _ in range(args.rounds):
        for m, t in trainers.items():
            times[m] += timed_steps(t, batches[m], args.steps)

    median = {m: statistics.median(ts) for m, ts in times.items()}
    result = {
        "model": args.model, "batch_size": args.batch_size, "input": args.input,
        "sparsity": args.sparsity, "granularity": args.granularity, "device": str(device),
        "amp": str(trainers["dense"].amp_dtype), "compile": args.compile,
        "threads": torch.get_num_threads(), "timed_steps_per_method": args.steps * args.rounds,
        "median_step_s": median,
        "steps_per_s": {m: 1 / s for m, s in median.items()},
        "ratio_to_dense": {m: median[m] / median["dense"] for m in METHODS},
        "achieved_sparsity": {m: t.pruning.achieved_sparsity() for m, t in trainers.items()},
        **({"peak_memory_mb": peak_mb} if peak_mb else {}),
    }
    print(f"{args.model}, batch {args.batch_size}, {args.input}px, {args.granularity} sparsity "
          f"{args.sparsity}, "
          f"{device} ({result['threads']} threads), amp {result['amp']}, "
          f"{result['timed_steps_per_method']} timed steps per method")
    print(f"{'method':8}{'steps/s':>10}{'ms/step':>10}{'x dense':>9}"
          + (f"{'peak MB':>10}" if peak_mb else ""))
    for m in METHODS:
        print(f"{m:8}{1 / median[m]:10.2f}{1000 * median[m]:10.1f}"
              f"{result['ratio_to_dense'][m]:9.3f}" + (f"{peak_mb[m]:10.0f}" if peak_mb else ""))
    print(f"PDP/dense step-time ratio: {result['ratio_to_dense']['pdp']:.3f}   "
          f"GMP/dense: {result['ratio_to_dense']['gmp']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
