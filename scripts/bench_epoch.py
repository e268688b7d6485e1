"""Seconds per training epoch on CIFAR-10-sized data, through the device-resident CIFAR path.

    python scripts/bench_epoch.py --model resnet18                  # 50,000 random 32x32 images
    python scripts/bench_epoch.py --model resnet18 --method pdp --json epoch.json

Writes random images in torchvision's CIFAR-10 pickle format to a temporary folder, builds the
trainer prune-train would build for `dataset=cifar10` (whole uint8 set on the device, crop + flip
and normalisation on whole batches there, bf16 autocast and channels_last on CUDA), and times
whole training epochs (CUDA-synchronised). The first epoch includes warm-up (cuDNN autotuning,
torch.compile); the figure to quote is the median of the later ones.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from pdprune.config import CONFIG_DIR
from pdprune.run import build_trainer

HELD_OUT = 1000  # validation images kept out of the timed training set


def write_random_cifar10(root: Path, train_images: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per_batch = -(-(train_images + HELD_OUT) // 5)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = per_batch if i < 5 else HELD_OUT
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--method", default="dense", choices=["dense", "gmp", "pdp"])
    p.add_argument("--images", type=int, default=50_000, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory() as tmp:
        write_random_cifar10(Path(tmp), args.images)
        per_batch = -(-(args.images + HELD_OUT) // 5)
        overrides = [f"model={args.model}", f"method={args.method}", "dataset=cifar10",
                     f"dataset.root={tmp}", f"dataset.val_size={5 * per_batch - args.images}",
                     f"dataset.batch_size={args.batch_size}", f"trainer.device={args.device}",
                     f"trainer.compile={args.compile}", "trainer.progress=false",
                     f"trainer.epochs={args.epochs}"]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        trainer = build_trainer(cfg, Path(tmp) / "run")
    device = trainer.device
    seconds = []
    for epoch in range(args.epochs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        trainer.train_epoch(epoch)  # ends with a host read of the epoch's loss: a sync
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.2f} s"
              + ("  (warm-up)" if epoch == 0 else ""), flush=True)
    timed = seconds[1:] or seconds
    result = {"model": args.model, "method": args.method, "device": str(device),
              "images": trainer.data.train.num_samples, "batch_size": args.batch_size,
              "amp": str(trainer.amp_dtype), "compile": args.compile, "epoch_s": seconds,
              "median_epoch_s": statistics.median(timed),
              "images_per_s": trainer.data.train.num_samples / statistics.median(timed)}
    print(f"{args.model} ({args.method}) on {result['images']} images, {device}: "
          f"{result['median_epoch_s']:.2f} s/epoch, {result['images_per_s']:.0f} images/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
