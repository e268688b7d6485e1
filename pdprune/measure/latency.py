"""Measured inference latency: warm-up, many timed runs, median. Latency, not FLOPs, is what a
pruned model is judged by (LayerPrune's point); a sparse weight in a dense kernel costs as much
as a dense one.

Models that are compared are timed in interleaved rounds (a few runs of each, in turn), so a
change in the machine's speed during the measurement (another process, clock boost, a cold
allocator) hits all of them alike instead of whichever happened to run then.

Three CPU runtimes: torch eager ("cpu"), torch.compile with frozen weights ("cpu_compiled":
batch norm folded into the convolutions, elementwise ops fused, no per-op Python dispatch, as a
torch deployment runs) and onnxruntime for ONNX files. Eager time is mostly per-op overhead for
small inputs: MobileNet-V2 on 8x8 digits takes ~8 ms in eager torch at batch 1 and 0.4 ms in
onnxruntime, so eager ratios understate what removing channels buys.
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


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


@torch.no_grad()
def compiled_latency(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                     batch_sizes: list[int], warmup: int, repeats: int) -> dict:
    """{batch size: {model name: measurement}} of the models compiled by torch.compile
    (inductor, frozen weights) on the CPU, each checked against its eager outputs first
    (`max_abs_diff_vs_eager`). One compile per model and batch size (tens of seconds for a
    MobileNet on 2 cores). If compiling fails (no C++ compiler, an unsupported op) the result is
    {"error": "..."} instead: the other runtimes' figures still stand."""
    import torch._inductor.config as inductor_config

    table: dict = {}
    homes = {name: next(model.parameters()).device for name, model in models.items()}
    with contextlib.ExitStack() as stack:
        for name, model in models.items():
            stack.enter_context(eval_mode(model.cpu()))
            stack.callback(model.to, homes[name])
        stack.enter_context(inductor_config.patch(freezing=True))
        try:
            compiled = {name: torch.compile(model, dynamic=False)
                        for name, model in models.items()}
            for batch in batch_sizes:
                x = torch.randn((batch, *input_shape))
                differences = {name: float((compiled[name](x) - model(x)).abs().max())
                               for name, model in models.items()}
                result = time_interleaved({name: (lambda c=c, x=x: c(x))
                                           for name, c in compiled.items()}, warmup, repeats)
                for name, measurement in result.items():
                    measurement["max_abs_diff_vs_eager"] = differences[name]
                table[str(batch)] = result
        except Exception as error:  # noqa: BLE001 - a toolchain problem must not lose the run
            return {"error": _first_line(error)}
        finally:
            torch._dynamo.reset()  # drop the compiled graphs and their frozen weights
    return table


def onnx_latency(files: dict[str, Path], input_shape: tuple[int, ...], batch_size: int,
                 warmup: int, repeats: int) -> dict:
    """The same comparison for ONNX files in onnxruntime's CPU provider, with as many threads
    as torch uses: what a deployment that runs the exported file would see."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle pool threads spin by default; with two sessions timed in turn, one session's spinning
    # threads take the cores the other one is running on (medians 0.38x-0.62x run to run).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)
    sessions = {name: onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
                for name, path in files.items()}
    calls = {name: (lambda s=session: s.run(None, {s.get_inputs()[0].name: x}))
             for name, session in sessions.items()}
    return time_interleaved(calls, warmup, repeats)


def latency_table(models: dict[str, nn.Module], input_shape: tuple[int, ...],
                  batch_sizes: list[int], warmup: int, repeats: int,
                  onnx_files: dict[str, Path] | None = None, compiled: bool = False) -> dict:
    """{runtime: {batch size: {model name: measurement}}}: torch on the CPU and, when present,
    CUDA (each model moved there and back), torch.compile on the CPU when `compiled`, and
    onnxruntime on the CPU for `onnx_files`."""
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
    if compiled:
        table["cpu_compiled"] = compiled_latency(models, input_shape, batch_sizes, warmup,
                                                 repeats)
    if onnx_files:
        table["onnxruntime"] = {str(batch): onnx_latency(onnx_files, input_shape, batch, warmup,
                                                         repeats) for batch in batch_sizes}
    return table


def format_latency(table: dict) -> list[str]:
    """One line per runtime and batch size: each model's median, and the ratio to the first."""
    lines = []
    for device, by_batch in table.items():
        if "error" in by_batch:
            lines.append(f"latency   {device}: not measured ({by_batch['error']})")
            continue
        for batch, by_model in by_batch.items():
            names = list(by_model)
            base = by_model[names[0]]["median_ms"]
            cells = [f"{n} {m['median_ms']:.2f} ms" + (f" ({m['median_ms'] / base:.2f}x)"
                                                      if i else "")
                     for i, (n, m) in enumerate(by_model.items())]
            lines.append(f"latency   {device} batch {batch}: " + ", ".join(cells))
    return lines
