"""Measured inference latency: warm-up, many timed runs, median. Latency, not FLOPs, is what a
pruned model is judged by (LayerPrune's point); a sparse weight in a dense kernel costs as much
as a dense one.

Models that are compared are timed in interleaved rounds (a few runs of each, in turn), so a
change in the machine's speed during the measurement (another process, clock boost, a cold
allocator) hits all of them alike instead of whichever happened to run then.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROUNDS = 5  # interleaved rounds per comparison


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """eval() for the duration. A loaded torch.export program keeps the mode it was exported in
    (eval, for our exports) and refuses train() / eval(), so it is left as it is."""
    was_training = model.training
    try:
        model.eval()
    except NotImplementedError:
        yield model
        return
    try:
        yield model
    finally:
        model.train(was_training)


def _stats(times_ms: list[float]) -> dict:
    deciles = statistics.quantiles(times_ms, n=10) if len(times_ms) > 1 else times_ms * 9
    return {"median_ms": statistics.median(times_ms), "p10_ms": deciles[0],
            "p90_ms": deciles[-1], "repeats": len(times_ms)}


def time_interleaved(calls: dict[str, Callable[[], object]], warmup: int, repeats: int,
                     sync: Callable[[], None] = lambda: None, rounds: int = ROUNDS) -> dict:
    """{name: median / p10 / p90 ms} of each call: `warmup` untimed calls each, then `repeats`
    timed calls each, spread over `rounds` interleaved rounds."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    rounds = max(1, min(rounds, repeats))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(rounds):
        share = repeats // rounds + (r < repeats % rounds)
        for name, call in calls.items():
            for _ in range(share):
                sync()
                start = time.perf_counter()
                call()
                sync()
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: _stats(t) for name, t in times.items()}


@torch.no_grad()
def compare_latency(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                    batch_size: int, device: torch.device, warmup: int = 5, repeats: int = 30,
                    dtype: torch.dtype = torch.float32) -> dict:
    """Eval-mode forwards of each model on one random batch, timed interleaved."""
    x = torch.randn((batch_size, *input_shape), device=device, dtype=dtype)
    with contextlib.ExitStack() as stack:
        for model in models.values():
            stack.enter_context(eval_mode(model))
        calls = {name: (lambda m=model: m(x)) for name, model in models.items()}
        return time_interleaved(calls, warmup, repeats, lambda: _sync(device))


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    device: torch.device, warmup: int = 5, repeats: int = 30,
                    dtype: torch.dtype = torch.float32) -> dict:
    """Median / p10 / p90 milliseconds of one eval-mode forward on a random batch."""
    return compare_latency({"model": model}, input_shape, batch_size, device, warmup, repeats,
                           dtype)["model"]


def onnx_latency(files: dict[str, Path], input_shape: tuple[int, ...], batch_size: int,
                 warmup: int, repeats: int) -> dict:
    """The same comparison for ONNX files in onnxruntime's CPU provider, with as many threads
    as torch uses: what a deployment that runs the exported file would see."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)
    sessions = {name: onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
                for name, path in files.items()}
    calls = {name: (lambda s=session: s.run(None, {s.get_inputs()[0].name: x}))
             for name, session in sessions.items()}
    return time_interleaved(calls, warmup, repeats)


def latency_table(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                  batch_sizes: list[int], warmup: int, repeats: int,
                  onnx_files: dict[str, Path] | None = None) -> dict:
    """{runtime: {batch size: {model name: measurement}}}: torch on the CPU and, when present,
    CUDA (each model moved there and back), and onnxruntime on the CPU for `onnx_files`."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    table: dict = {}
    for device in devices:
        homes = {name: next(model.parameters()).device for name, model in models.items()}
        for model in models.values():
            model.to(device)
        for batch in batch_sizes:
            table.setdefault(device.type, {})[str(batch)] = compare_latency(
                models, input_shape, batch, device, warmup, repeats)
        for name, model in models.items():
            model.to(homes[name])
    if onnx_files:
        table["onnxruntime"] = {str(batch): onnx_latency(onnx_files, input_shape, batch, warmup,
                                                         repeats) for batch in batch_sizes}
    return table


def format_latency(table: dict) -> list[str]:
    """One line per runtime and batch size: each model's median, and the ratio to the first."""
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
