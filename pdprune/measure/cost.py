"""What a model costs: parameters, non-zeros and multiply-accumulates, per layer."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class Remaining:
    """The network a structured run leaves once its pruned channels are physically gone (what
    the compact export holds). Its size is what a channel run's non-zeros count: in the masked
    model a weight that reads a pruned channel is dead but not zero, and the next layer's
    columns for that channel would count as non-zero."""

    params: int  # all parameters of the remaining network
    macs: dict[str, int]  # per conv / linear layer: MACs for one sample
    weights: dict[str, int]  # per conv / linear layer: elements of its weight


def remaining_network(compact: nn.Module, input_shape: tuple[int, ...]) -> Remaining:
    """Measure `compact`, the run's model with its pruned units removed."""
    device = next(compact.parameters()).device
    macs = layer_macs(compact, input_shape, device)
    weights = {name: module.weight.numel() for name, module in compact.named_modules()
               if isinstance(module, COUNTED)}
    return Remaining(params=parameter_counts(compact)[0],
                     macs={name: dense for name, (dense, _) in macs.items()}, weights=weights)
