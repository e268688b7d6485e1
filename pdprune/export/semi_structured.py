"""2:4 weights on sparse tensor cores: `torch.sparse.to_sparse_semi_structured`.

A 2:4 pattern only saves time where a kernel skips the zeros. PyTorch has such a kernel for
2-D Linear weights on NVIDIA GPUs of compute capability 8.0 and up (fp16 / bf16, CUTLASS or
cuSPARSELt). Convolutions have none, so for a CNN only its Linear layers could convert. Where
no kernel applies the summary says so, and why, instead of implying a speedup.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..measure.latency import compare_latency

DTYPE = torch.bfloat16  # the sparse kernels take half precision; bf16 is the AMP dtype here


def unsupported_reason(device: torch.device | None = None) -> str | None:
    """Why the semi-structured kernel cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    device = device or torch.device("cuda")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 0):
        return f"GPU compute capability {major}.{minor} < 8.0 has no 2:4 sparse tensor cores"
    return None


def is_two_four(weight: torch.Tensor) -> bool:
    """Every group of 4 consecutive input weights holds at most 2 non-zeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


@torch.no_grad()
def to_semi_structured(model: nn.Module, device: torch.device
                       ) -> tuple[nn.Module, list[str], dict[str, str]]:
    """A bf16 eval copy of `model` on `device` whose 2:4 Linear weights are semi-structured
    sparse tensors: (copy, converted layer names, {skipped Linear layer: why})."""
    from torch.sparse import to_sparse_semi_structured

    sparse = copy.deepcopy(model).eval().to(device=device, dtype=DTYPE)
    converted, skipped = [], {}
    for name, module in sparse.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if not is_two_four(module.weight):
            skipped[name] = "not 2:4 (left dense)"
            continue
        try:
            module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.contiguous()),
                                         requires_grad=False)
            converted.append(name)
        except RuntimeError as error:  # shape not a multiple of the kernel's tile, ...
            skipped[name] = str(error).splitlines()[0][:200]
    return sparse, converted, skipped


def sparse_kernel_report(model: nn.Module, pattern: tuple[int, int] | None,
                         batch: torch.Tensor, batch_sizes: list[int], warmup: int,
                         repeats: int) -> dict:
    """summary.json's `sparse_kernel`: whether a 2:4 kernel ran, on which layers, its outputs
    against the dense bf16 model and the measured latency of both (median, CUDA)."""
    if pattern != (2, 4):
        return {"used": False, "reason": "no sparse kernel: only a 2:4 pattern has one (torch."
                "sparse semi-structured); the zeros are stored and multiplied densely"}
    reason = unsupported_reason()
    if reason:
        return {"used": False, "reason": f"no sparse kernel: {reason}; the zeros are stored and "
                "multiplied densely"}
    device = torch.device("cuda")
    sparse, converted, skipped = to_semi_structured(model, device)
    if not converted:
        return {"used": False, "skipped": skipped,
                "reason": "no sparse kernel: no Linear layer with a 2:4 weight fits it "
                "(convolutions have no semi-structured kernel); the zeros are stored and "
                "multiplied densely"}
    dense = copy.deepcopy(model).eval().to(device=device, dtype=DTYPE)
    x = batch.to(device=device, dtype=DTYPE)
    with torch.no_grad():
        difference = float((sparse(x).float() - dense(x).float()).abs().max())
    shape = tuple(batch.shape[1:])
    latency = {}
    for size in batch_sizes:
        timed = compare_latency({"dense_bf16": dense, "semi_structured_bf16": sparse}, shape,
                                size, device, warmup, repeats, dtype=DTYPE)
        timed["speedup"] = timed["dense_bf16"]["median_ms"] / \
            timed["semi_structured_bf16"]["median_ms"]
        latency[str(size)] = timed
    return {"used": True, "kind": "semi_structured_2:4", "device": torch.cuda.get_device_name(),
            "layers": converted, "skipped": skipped, "max_abs_diff_vs_dense_bf16": difference,
            "latency": latency}
