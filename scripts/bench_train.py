"""What pruning costs per training step: dense vs GMP vs PDP, timed in one process.

    python scripts/bench_train.py --model resnet18 --batch-size 128 --input 32
    python scripts/bench_train.py --model resnet18 --device cuda --json bench.json
    python scripts/bench_train.py --model resnet18 --granularity channel --sparsity 0.5

Each method gets the trainer prune-train builds (same model adaptation, optimizer, AMP,
channels_last, optional torch.compile), with its masks at the target sparsity as they are late
in training. With --granularity channel a fourth arm, "compacted", trains the GMP network with
its pruned channels physically removed (what training continues with once channel decisions
are final), in a trainer of the same settings: dense vs masked vs compacted at one sparsity.
Steps of all arms are interleaved round-robin, so a change in machine speed hits all of them
alike; each step is timed alone (CUDA-synchronised on a GPU) and the median is reported.
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

from pdprune.api import Pruning
from pdprune.config import CONFIG_DIR
from pdprune.export.compact import CompactCheck, compact_model
from pdprune.run import build_trainer, make_trainer

METHODS = ("dense", "gmp", "pdp")
COMPACTED = "compacted"  # channel granularity: the GMP network without its pruned channels
MASKED = "gmp"  # the masked arm the compacted one is cut from (binary masks, final at target)
CHECK_BATCH = 8  # samples on which the compacted network is checked against the masked one
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


def compose_config(method: str, args: argparse.Namespace):
    overrides = [
        f"model={args.model}", f"method={method}", f"sparsity={args.sparsity}",
        f"granularity={args.granularity}",
        "dataset=synthetic", f"dataset.size={args.input}", f"dataset.channels={args.channels}",
        f"dataset.num_classes={args.classes}", f"dataset.batch_size={args.batch_size}",
        f"dataset.num_train={args.batch_size}", "dataset.num_val=2", "dataset.num_test=2",
        f"trainer.device={args.device}", f"trainer.amp={args.amp}",
        f"trainer.compile={args.compile}", "trainer.progress=false",
        # the masked arms stay masked; the compacted arm is built from one explicitly
        "trainer.compact_when_final=false",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def build(method: str, args: argparse.Namespace, run_dir: Path):
    trainer = build_trainer(compose_config(method, args), run_dir)
    trainer.state.step = LATE_IN_TRAINING
    trainer.pruning.before_step(trainer.state.step)  # PDP: budgets from this model's weights
    return trainer


def build_compacted(args: argparse.Namespace, run_dir: Path, example: torch.Tensor):
    """A trainer of the same settings (optimizer, AMP, channels_last, compile) for the masked
    arm's network with its pruned channels removed; also the finalized masked trainer it was
    cut from and the compact export's output check. The masked network is built again from
    the same seed (the masked arm's own masks): a deep copy would share the parametrized
    module classes, and finalizing it would strip the masked arm's parametrizations."""
    masked = build(MASKED, args, run_dir / "masked")
    masked.pruning.finalize()  # harden at the target, bake the zeros
    plan = masked.pruning.export_plan()
    compact, check = compact_model(masked.model, plan.removed_units, example[:CHECK_BATCH])
    cfg = compose_config("dense", args)  # nothing left to prune: the network is what remains
    compact = compact.to(masked.device)
    dense = Pruning.from_config(cfg, compact, steps_per_epoch=len(masked.data.train))
    trainer = make_trainer(cfg, compact, masked.data, dense, masked.device, run_dir,
                           cfg.trainer.epochs)
    trainer.state.step = LATE_IN_TRAINING
    return trainer, masked, check


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, args.channels, args.input, args.input, generator=gen)
    y = torch.randint(args.classes, (args.batch_size,), generator=gen)
    check: CompactCheck | None = None
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {m: build(m, args, Path(tmp) / m) for m in METHODS}
        if args.granularity == "channel":
            trainers[COMPACTED], cut, check = build_compacted(args, Path(tmp) / COMPACTED, x)
    arms = list(trainers)
    device = trainers["dense"].device
    batches = {m: t.to_device(x, y) for m, t in trainers.items()}

    times: dict[str, list[float]] = {m: [] for m in arms}
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
    ratio = {m: median[m] / median["dense"] for m in arms}
    # the compacted network is dense: its sparsity is that of the masks it was cut from
    achieved = {m: t.pruning.achieved_sparsity() for m, t in trainers.items() if m != COMPACTED}
    if check is not None:
        achieved[COMPACTED] = cut.pruning.achieved_sparsity()
    result = {
        "model": args.model, "batch_size": args.batch_size, "input": args.input,
        "sparsity": args.sparsity, "granularity": args.granularity, "device": str(device),
        "amp": str(trainers["dense"].amp_dtype), "compile": args.compile,
        "threads": torch.get_num_threads(), "timed_steps_per_method": args.steps * args.rounds,
        "median_step_s": median,
        "steps_per_s": {m: 1 / s for m, s in median.items()},
        "ratio_to_dense": ratio,
        "achieved_sparsity": achieved,
        # parameters of the network each arm trains (a masked one keeps all of its own)
        "parameters": {m: parameters(t.model) for m, t in trainers.items()},
        **({"peak_memory_mb": peak_mb} if peak_mb else {}),
    }
    if check is not None:
        result["masked_to_dense"] = ratio[MASKED]
        result["compacted_to_dense"] = ratio[COMPACTED]
        result["compacted_to_masked"] = median[COMPACTED] / median[MASKED]
        result["compact_check"] = {"fp64": check.fp64, "fp32": check.fp32}
    print(f"{args.model}, batch {args.batch_size}, {args.input}px, {args.granularity} sparsity "
          f"{args.sparsity}, "
          f"{device} ({result['threads']} threads), amp {result['amp']}, "
          f"{result['timed_steps_per_method']} timed steps per method")
    print(f"{'method':10}{'steps/s':>10}{'ms/step':>10}{'x dense':>9}{'params':>12}"
          + (f"{'peak MB':>10}" if peak_mb else ""))
    for m in arms:
        print(f"{m:10}{1 / median[m]:10.2f}{1000 * median[m]:10.1f}{ratio[m]:9.3f}"
              f"{result['parameters'][m]:12d}" + (f"{peak_mb[m]:10.0f}" if peak_mb else ""))
    print(f"PDP/dense step-time ratio: {ratio['pdp']:.3f}   GMP/dense: {ratio['gmp']:.3f}")
    if check is not None:
        print(f"channels {achieved[COMPACTED]:.3f} pruned: masked (GMP)/dense "
              f"{ratio[MASKED]:.3f}   compacted/dense {ratio[COMPACTED]:.3f}   "
              f"compacted/masked {result['compacted_to_masked']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
