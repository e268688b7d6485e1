"""Measured inference latency: warm-up, many timed runs, median. Latency, not FLOPs, is what a
pruned model is judged by (LayerPrune's point); a sparse weight in a dense kernel costs as much
as a dense one."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    device: torch.device, warmup: int = 5, repeats: int = 30) -> dict:
    """Median / p10 / p90 milliseconds of one eval-mode forward on a random batch."""
    was_training = model.training
    model.eval()
    x = torch.randn((batch_size, *input_shape), device=device)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(1000 * (time.perf_counter() - start))
    finally:
        model.train(was_training)
    deciles = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return {"median_ms": statistics.median(times), "p10_ms": deciles[0], "p90_ms": deciles[-1],
            "repeats": repeats}


def latency_table(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                  batch_sizes: list[int], warmup: int, repeats: int) -> dict:
    """{device: {batch size: {model name: measurement}}} on the CPU and, when present, CUDA.
    Each model is measured on each device in turn and moved back where it was."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    table: dict = {}
    for device in devices:
        for name, model in models.items():
            home = next(model.parameters()).device
            model.to(device)
            for batch in batch_sizes:
                table.setdefault(device.type, {}).setdefault(str(batch), {})[name] = \
                    measure_latency(model, input_shape, batch, device, warmup, repeats)
            model.to(home)
    return table


def format_latency(table: dict) -> list[str]:
    """One line per device and batch size: each model's median, and the ratio to the first."""
    lines = []
    for device, by_batch in table.items():
        for batch, by_model in by_batch.items():
            names = list(by_model)
            base = by_model[names[0]]["median_ms"]
            cells = [f"{n} {m['median_ms']:.2f} ms" + (f" ({m['median_ms'] / base:.2f}x)"
                                                      if i else "")
                     for i, (n, m) in enumerate(by_model.items())]
            lines.append(f"latency   {device} batch {batch}: " + ", ".join(cells))
    return lines
