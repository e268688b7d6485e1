"""What a finished run writes beside its summary: the hardened weights, and on request the
compact model (a torch.export program plus its weights) and ONNX. Each file is written whole
to a temporary file and then replaces the old one (files.replacing): a failed write (a full
disk, a failed check) leaves the previous file as it was."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import save
from torch import nn

from ..errors import ConfigError
from ..files import replacing
from ..measure.cost import layer_macs, parameter_counts
from ..measure.latency import latency_table
from ..pruning import ExportPlan
from .compact import compact_model
from .portable import save_and_reload_program, save_onnx, save_program
from .semi_structured import sparse_kernel_report


def save_weights(model: nn.Module, path: Path,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """`model`'s state_dict (or `state`) as safetensors."""
    # serialised in memory and written by Python: a full disk is an OSError (ENOSPC) that
    # names the file, not a safetensors error; the bytes are save_file's
    state = model.state_dict() if state is None else state
    data = save({k: v.detach().contiguous().cpu() for k, v in state.items()})
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def export_run(cfg: DictConfig, model: nn.Module, plan: ExportPlan, batch: torch.Tensor,
               run_dir: Path) -> tuple[nn.Module, dict]:
    """Write the run's files; returns the exported model (compact when asked) and what the
    summary records about it. `plan` is the pruner's: what can be removed, whether the model is
    already shallower, its N:M pattern. `batch` is a real batch, used for every check."""
    info: dict = {"files": []}
    if cfg.safetensors:
        # the dense architecture's shapes, also when channels left the live model in training
        save_weights(model, run_dir / "model.safetensors", plan.dense_state)
        info["files"].append("model.safetensors")
    exported = model
    if cfg.compact:
        if plan.removed_units is None:
            raise ConfigError("export.compact", True, plan.reason)
        exported, check = compact_model(model, plan.removed_units, batch)
        save_weights(exported, run_dir / "compact.safetensors")
        with replacing(run_dir / "compact.pt2") as tmp:
            program_difference = save_program(exported, batch, tmp)
        params, nonzero = parameter_counts(exported)
        macs = layer_macs(exported, tuple(batch.shape[1:]), torch.device("cpu"))
        info["files"] += ["compact.safetensors", "compact.pt2"]
        info["compact"] = {"params": params, "nonzero_params": nonzero,
                           "flops": sum(d for d, _ in macs.values()),
                           "max_abs_diff_vs_masked": check.fp64,  # the check (<= 1e-5)
                           "max_abs_diff_vs_masked_fp32": check.fp32,
                           "max_abs_diff_program": program_difference,
                           "check_batch": batch.shape[0]}
    if plan.shallower:
        with replacing(run_dir / "model.pt2") as tmp:
            info["program"] = save_shallower(model, batch, tmp)
        info["files"].append("model.pt2")
    if cfg.compact or plan.shallower:
        info["sparse_kernel"] = {"used": False, "reason": "none needed: the exported model is "
                                 "a smaller dense model"}
    else:
        info["sparse_kernel"] = sparse_kernel_report(
            model, plan.pattern, batch, list(cfg.latency_batch_sizes), cfg.latency_warmup,
            cfg.latency_repeats)
    if cfg.onnx:
        name = "compact.onnx" if cfg.compact else "model.onnx"
        with replacing(run_dir / name) as tmp:  # checked in onnxruntime before it replaces
            info["onnx_max_abs_diff"] = save_onnx(exported, batch, tmp)
        info["onnx_file"] = name
        info["files"].append(name)
    return exported, info


ACCOUNTING_SAMPLES = 8  # the compact model built only to be measured is checked on so many


def remaining_model(model: nn.Module, plan: ExportPlan, batch: torch.Tensor,
                    exported: nn.Module) -> nn.Module | None:
    """The network a channel run leaves, its pruned channels physically removed: what its
    non-zeros and MACs count (measure.cost.remaining_network). The compact export when
    export_run built it (`exported`), else built here, checked and not saved. None when the
    structure removes nothing: zeros inside dense layers count as zeros, and a layer-pruned
    model is already the network that remains."""
    if plan.removed_units is None:
        return None
    if exported is not model:  # export.compact: export_run built it from the same plan
        return exported
    compact, _ = compact_model(model, plan.removed_units, batch[:ACCOUNTING_SAMPLES])
    return compact


def weight_layers(state: dict[str, torch.Tensor]) -> int:
    """Conv and linear layers in a state_dict: the weights of two or more dimensions."""
    return sum(1 for k, v in state.items() if k.endswith("weight") and v.dim() >= 2)


def save_shallower(model: nn.Module, batch: torch.Tensor, path: Path) -> dict:
    """The layer-pruned model as a torch.export program (loads without pdprune), checked on
    reload; and how many conv / linear layers the saved file holds."""
    reloaded, difference = save_and_reload_program(model, batch, path)
    return {"file": path.name, "max_abs_diff_vs_model": difference,
            "weight_layers": weight_layers(reloaded.state_dict())}


def export_latency(dense: nn.Module, exported: nn.Module, batch: torch.Tensor,
                   batch_sizes: list[int], warmup: int, repeats: int,
                   onnx_file: Path | None = None, compiled: bool = False) -> dict:
    """The dense architecture against the exported model in torch (CPU, and CUDA when
    present), compiled by torch.compile when `compiled`, and, given the exported model's ONNX
    file, both as ONNX files in onnxruntime. `batch` (real inputs) fixes the input shape and
    checks the dense model's ONNX export."""
    shape = tuple(batch.shape[1:])
    models = {"dense": dense, "exported": exported}
    if onnx_file is None:
        return latency_table(models, shape, batch_sizes, warmup, repeats, compiled=compiled)
    with tempfile.TemporaryDirectory() as tmp:
        save_onnx(dense, batch, Path(tmp) / "dense.onnx")
        return latency_table(models, shape, batch_sizes, warmup, repeats, onnx_files={
            "dense": Path(tmp) / "dense.onnx", "exported": onnx_file}, compiled=compiled)
