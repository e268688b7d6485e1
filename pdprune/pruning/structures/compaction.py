"""Physical removal of pruned channels from a model that is training: the parameters, their
optimizer state and the map back to the dense architecture's positions.

Torch-Pruning slices every coupled parameter (and the next layers' inputs) into new, smaller
Parameters. The same removal applied to a copy of the model whose parameters hold optimizer
state (momentum, Adam moments) slices that state exactly as the parameters were sliced; applied
to a copy that holds each element's position in the dense model, it tells where every kept
value sits in the dense architecture (dense_state). No index arithmetic of our own.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .coupled import remove_channels


def _replace_tensors(model: nn.Module, values: dict[str, torch.Tensor],
                     dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of `model` (in `dtype`, if given) whose parameters and buffers hold `values`."""
    shadow = copy.deepcopy(model)
    if dtype is not None:
        shadow.to(dtype)
    for name, tensor in [*shadow.named_parameters(), *shadow.named_buffers()]:
        if name in values:
            tensor.data = values[name].to(tensor.device, tensor.dtype).clone()
    return shadow


def sliced(model: nn.Module, example: torch.Tensor, pruned: dict[str, torch.Tensor],
           values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`values` (by parameter / buffer name, shaped like the model's) cut as removing `pruned`
    from `model` cuts the model's own tensors."""
    shadow = remove_channels(_replace_tensors(model, values), example, pruned)
    return {name: t.detach() for name, t in [*shadow.named_parameters(),
                                               *shadow.named_buffers()] if name in values}


class DensePositions:
    """Where every element of the live (compacted) model sits in the dense architecture: a
    float64 copy of the dense model holding each element's flat index, cut by every removal."""

    def __init__(self, dense: nn.Module):
        self.shapes = {n: t.shape for n, t in [*dense.named_parameters(),
                                               *dense.named_buffers()] if t.is_floating_point()}
        # float64 holds every index below 2**53 exactly
        self.tracker = _replace_tensors(dense, {n: torch.arange(s.numel(), dtype=torch.float64)
                                                .reshape(s) for n, s in self.shapes.items()},
                                        torch.float64)

    def remove(self, example: torch.Tensor, pruned: dict[str, torch.Tensor]) -> None:
        remove_channels(self.tracker, example.double().to(_device(self.tracker)), pruned)

    def dense_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The live model's state_dict in the dense architecture's shapes, zeros where the
        removed channels were."""
        own = dict([*self.tracker.named_parameters(), *self.tracker.named_buffers()])
        result = {}
        for name, value in state.items():
            if name not in self.shapes:
                result[name] = value  # integer buffers (num_batches_tracked)
                continue
            full = value.new_zeros(self.shapes[name])
            full.view(-1)[own[name].detach().long().view(-1).to(value.device)] = value.reshape(-1)
            result[name] = full
        return result


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def remap_optimizer(optimizer: torch.optim.Optimizer, before: dict[str, nn.Parameter],
                    after: dict[str, nn.Parameter], state: dict[str, dict]) -> None:
    """Point `optimizer` at the new Parameters (`after`, by name) of those it held (`before`),
    with their state cut as `state` says (by name; scalars such as Adam's step stay)."""
    name_of = {id(p): n for n, p in before.items()}
    for group in optimizer.param_groups:
        for i, old in enumerate(group["params"]):
            name = name_of.get(id(old))
            new = after.get(name) if name is not None else None
            if new is None or new is old:
                continue
            own = optimizer.state.pop(old, None)
            if own is not None:
                optimizer.state[new] = {k: state.get(name, {}).get(k, v) for k, v in own.items()}
            group["params"][i] = new


def tensor_state(optimizer: torch.optim.Optimizer,
                 params: dict[str, nn.Parameter]) -> dict[str, dict[str, torch.Tensor]]:
    """{key: {param name: state tensor}} for every state tensor shaped like its parameter."""
    by_key: dict[str, dict[str, torch.Tensor]] = {}
    for name, p in params.items():
        for key, value in optimizer.state.get(p, {}).items():
            if torch.is_tensor(value) and value.shape == p.shape:
                by_key.setdefault(key, {})[name] = value
    return by_key
