"""Files that load without pdprune: a torch.export program and ONNX, each checked on reload."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import PdpruneError

ONNX_TOLERANCE = 1e-4  # max |onnxruntime - torch|


def _batch_dim() -> tuple[dict, ...]:
    return ({0: torch.export.Dim.DYNAMIC},)


@torch.no_grad()
def save_program(model: nn.Module, batch: torch.Tensor, path: Path) -> float:
    """torch.export the eval-mode model (any batch size) to `path` (.pt2); reload it and return
    the max abs difference of its outputs from the model's on `batch`.
    Load with: torch.export.load(path).module()(x). Exported from a CPU copy, so the file
    loads on any machine; `.to("cuda")` moves it."""
    return save_and_reload_program(model, batch, path)[1]


@torch.no_grad()
def save_and_reload_program(model: nn.Module, batch: torch.Tensor,
                            path: Path) -> tuple[nn.Module, float]:
    """save_program, also returning the module reloaded from the file."""
    model, batch = copy.deepcopy(model).eval().cpu(), batch.cpu().float()
    program = torch.export.export(model, (batch,), dynamic_shapes=_batch_dim())
    torch.export.save(program, str(path))
    reloaded = torch.export.load(str(path)).module()
    return reloaded, float((reloaded(batch) - model(batch)).abs().max())


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@torch.no_grad()
def save_onnx(model: nn.Module, batch: torch.Tensor, path: Path) -> float:
    """ONNX (dynamic batch) at `path`, run in onnxruntime on `batch` and compared with torch:
    returns the max abs difference; raises above ONNX_TOLERANCE."""
    import onnxruntime

    model, batch = copy.deepcopy(model).eval().cpu(), batch.cpu().float()
    with _quiet():  # the exporter narrates each stage
        torch.onnx.export(model, (batch,), str(path), dynamo=True, dynamic_shapes=_batch_dim(),
                          input_names=["input"], output_names=["logits"], external_data=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ort_out,) = session.run(None, {"input": batch.numpy()})
    difference = float(np.abs(ort_out - model(batch).numpy()).max())
    if not difference <= ONNX_TOLERANCE:
        raise PdpruneError(f"export.onnx: onnxruntime's outputs differ from torch's by "
                           f"{difference:.3g} (> {ONNX_TOLERANCE:g})")
    return difference
