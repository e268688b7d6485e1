"""What a model costs: parameters, non-zeros and multiply-accumulates, per layer."""

from __future__ import annotations

import math

import torch
from torch import nn

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def layer_macs(model: nn.Module, input_shape: tuple[int, ...],
               device: torch.device) -> dict[str, tuple[int, int]]:
    """{layer name: (dense MACs, non-zero MACs)} for one sample, for every conv / linear layer.

    A weight's MACs are its element count times the output positions it is applied at; a zero
    weight's MACs are the ones a sparse kernel could skip.
    """
    out: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, COUNTED):
            def hook(mod, _inputs, output, name=name):
                if isinstance(mod, nn.Linear):
                    positions = output.numel() // mod.out_features
                else:
                    positions = math.prod(output.shape[2:])
                weight = mod.weight
                out[name] = (positions * weight.numel(),
                             positions * int(torch.count_nonzero(weight)))
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters, non-zero parameters)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)
