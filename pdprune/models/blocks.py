"""Whole blocks that can be removed from a network, and their removal (model surgery; LayerPrune
uses it, docs/methods.md#layerprune).

A removable block leaves a working network behind when it goes:
- a residual block whose input and output shapes agree (no projection on its shortcut):
  torchvision's BasicBlock / Bottleneck, our CIFAR BasicBlock, MobileNet-v2's InvertedResidual
  with a residual connection. It is replaced by nn.Identity(), i.e. by its shortcut. (The ReLU
  after a ResNet block's add acts on x + f(x); with f gone it acts on x, which is already the
  output of a ReLU, so the identity is exact.)
- a transformer encoder layer (BERT family): dropped from the encoder's layer list, and the
  model config's layer count updated.
- a conv layer of a plain chain (VGG's `features`, all but the last conv): the conv, its BN
  and ReLU become identities and the next conv is re-shaped to the removed one's input channels
  (its filters keep the input channels both have; any others start at zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock as TorchvisionBasic
from torchvision.models.resnet import Bottleneck
from torchvision.models.vgg import VGG

from .cifar_resnet import BasicBlock as CifarBasic

RESIDUAL_BLOCKS = (TorchvisionBasic, Bottleneck, CifarBasic)


@dataclass
class Block:
    """One removable block: `name` in the model, and how it goes (`residual` | `encoder_layer` |
    `chain_conv`). `members`: the modules that make it up, when they are not its submodules."""

    name: str
    kind: str
    members: tuple[str, ...] = ()

    def contains(self, module_name: str) -> bool:
        if self.members:
            return module_name in self.members
        return module_name.startswith(self.name + ".")


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
    if isinstance(model, VGG):
        convs = _chain_convs(model.features)[:-1]  # the last one feeds the classifier
        blocks += [Block(f"features.{i}", "chain_conv", (f"features.{i}", f"features.{i + 1}"))
                   for i in convs]
    return blocks


def _chain_convs(features: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]


def remove_blocks(model: nn.Module, names: list[str]) -> list[nn.Parameter]:
    """Remove the named blocks in place (see the module docstring for how). Returns the
    parameters whose shape changed (an optimizer's state for them is stale)."""
    by_kind = {b.name: b.kind for b in find_blocks(model)}
    unknown = [n for n in names if n not in by_kind]
    if unknown:
        raise ValueError(f"not removable blocks: {', '.join(unknown)}")
    dropped_layers = []
    chain = sorted(int(n.rpartition(".")[2]) for n in names if by_kind[n] == "chain_conv")
    reshaped = [_remove_chain_conv(model.features, index)  # in order: each re-shapes the
                for index in chain]                          # next conv still there
    for name in (n for n in names if by_kind[n] != "chain_conv"):
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
    return reshaped


@torch.no_grad()
def _remove_chain_conv(features: nn.Sequential, index: int) -> nn.Parameter:
    """Returns the re-shaped weight: the same Parameter (the optimizer holds it), new shape."""
    removed = features[index]
    following = next(i for i in _chain_convs(features) if i > index)
    conv = features[following]
    weight = conv.weight.new_zeros((conv.out_channels, removed.in_channels, *conv.kernel_size))
    shared = min(removed.in_channels, conv.in_channels)
    weight[:, :shared] = conv.weight[:, :shared]
    conv.weight.data, conv.in_channels = weight, removed.in_channels
    for i in range(index, following):  # the conv, its BN and ReLU (pools stay)
        if isinstance(features[i], nn.Conv2d | nn.BatchNorm2d | nn.ReLU):
            features[i] = nn.Identity()
    return conv.weight


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
    chain = len(_chain_convs(model.features)) if isinstance(model, VGG) else 0
    return sum(isinstance(m, RESIDUAL_BLOCKS + (InvertedResidual,)) for m in model.modules()) \
        + (len(encoder[1]) if encoder else 0) + chain
