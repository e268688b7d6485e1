"""Whole blocks that can be removed from a network (LayerPrune, METHODS.md section 3).

A removable block leaves a working network behind when it goes:
- a residual block whose input and output shapes agree (no projection on its shortcut):
  torchvision's BasicBlock / Bottleneck, our CIFAR BasicBlock, MobileNet-v2's InvertedResidual
  with a residual connection. It is replaced by nn.Identity(), i.e. by its shortcut. (The ReLU
  after a ResNet block's add acts on x + f(x); with f gone it acts on x, which is already the
  output of a ReLU, so the identity is exact.)
- a transformer encoder layer (BERT family): dropped from the encoder's layer list, and the
  model config's layer count updated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock as TorchvisionBasic
from torchvision.models.resnet import Bottleneck

from ..models.cifar_resnet import BasicBlock as CifarBasic
from .importance import scored_type

RESIDUAL_BLOCKS = (TorchvisionBasic, Bottleneck, CifarBasic)


@dataclass
class Block:
    """One removable block: `name` in the model, and how it goes (`residual` | `encoder_layer`)."""

    name: str
    kind: str


def _is_shape_preserving(module: nn.Module) -> bool:
    if isinstance(module, RESIDUAL_BLOCKS):
        return module.downsample is None
    if isinstance(module, InvertedResidual):
        return bool(module.use_res_connect)
    return False


def _encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The (name, ModuleList) of a Hugging Face encoder's layers, if the model has one."""
    for name, module in model.named_modules():
        if name.endswith("encoder.layer") and isinstance(module, nn.ModuleList):
            return name, module
    return None


def find_blocks(model: nn.Module) -> list[Block]:
    """Every removable block, in the order of the model's modules."""
    blocks = [Block(name, "residual") for name, module in model.named_modules()
              if _is_shape_preserving(module)]
    encoder = _encoder_layers(model)
    if encoder is not None:
        blocks += [Block(f"{encoder[0]}.{i}", "encoder_layer") for i in range(len(encoder[1]))]
    return blocks


def block_scores(model: nn.Module, blocks: list[Block],
                 filter_scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """A block's importance: the mean of its filters' scores (`filter_scores` maps module names
    to per-output-channel scores; every scored module inside the block counts)."""
    result = {}
    for block in blocks:
        inside = [s for name, s in filter_scores.items() if name.startswith(block.name + ".")]
        if not inside:
            raise ValueError(f"{block.name}: no scored layer inside the block")
        result[block.name] = float(torch.cat([s.flatten().cpu() for s in inside]).mean())
    return result


def scored_modules(model: nn.Module, blocks: list[Block], criterion: str) -> dict[str, nn.Module]:
    """The modules inside removable blocks that `criterion` scores."""
    types = scored_type(criterion)
    prefixes = tuple(block.name + "." for block in blocks)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, types) and name.startswith(prefixes)}


def remove_blocks(model: nn.Module, names: list[str]) -> None:
    """Remove the named blocks in place (see the module docstring for how)."""
    by_kind = {b.name: b.kind for b in find_blocks(model)}
    unknown = [n for n in names if n not in by_kind]
    if unknown:
        raise ValueError(f"not removable blocks: {', '.join(unknown)}")
    dropped_layers = []
    for name in names:
        parent_name, _, key = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if by_kind[name] == "residual":
            if isinstance(parent, nn.Sequential | nn.ModuleList):
                parent[int(key)] = nn.Identity()
            else:
                setattr(parent, key, nn.Identity())
        else:
            dropped_layers.append(int(key))
    if dropped_layers:
        _drop_encoder_layers(model, set(dropped_layers))


def _drop_encoder_layers(model: nn.Module, indices: set[int]) -> None:
    encoder_name, layers = _encoder_layers(model)
    kept = [layer for i, layer in enumerate(layers) if i not in indices]
    encoder = model.get_submodule(encoder_name.rpartition(".")[0])
    encoder.layer = nn.ModuleList(kept)
    for i, layer in enumerate(kept):  # attention modules know their index (caches)
        attention = getattr(getattr(layer, "attention", None), "self", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = i
    config = getattr(model, "config", None) or getattr(getattr(model, "hf", None), "config", None)
    if config is not None:
        config.num_hidden_layers = len(kept)


def count_blocks(model: nn.Module) -> int:
    """Blocks the model has, removable or not: residual blocks, inverted residuals, encoder
    layers (its depth in blocks)."""
    encoder = _encoder_layers(model)
    return sum(isinstance(m, RESIDUAL_BLOCKS + (InvertedResidual,)) for m in model.modules()) \
        + (len(encoder[1]) if encoder else 0)
