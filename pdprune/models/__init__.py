"""Models keyed by name (the `model=` group); torchvision does the real work where it can.

Every builder takes (cfg, input_shape, num_classes), input_shape being (C, H, W) (or any shape
for the MLP, or (length,) token ids for the text models in text.py), and returns a model
(randomly initialised, or a pretrained text encoder with a new head); build_model then loads
cfg.checkpoint, if set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from omegaconf import DictConfig
from torch import nn

from ..errors import PdpruneError
from .checkpoint import load_weights
from .cifar_resnet import DEPTHS, build_cifar_resnet
from .custom import build_custom
from .libraries import build_timm, build_torchvision
from .mobilenet_v1 import MobileNetV1
from .small import LeNet, build_mlp
from .text import build_text_model
from .text_names import TEXT_MODELS
from .torchvision_zoo import build_mobilenet_v2, build_resnet, build_vgg, is_small
from .vit import SIZES as VIT_SIZES
from .vit import build_vit

Builder = Callable[[DictConfig, tuple[int, ...], int], nn.Module]


def _torchvision(build: Callable[..., nn.Module]) -> Builder:
    return lambda cfg, shape, classes: build(shape, classes, cfg.get("small_input"))


def _mobilenet_v1(cfg: DictConfig, shape: tuple[int, ...], classes: int) -> nn.Module:
    return MobileNetV1(shape[0], classes, cfg.get("width", 1.0),
                       is_small(shape, cfg.get("small_input")))


def _cifar_resnet(name: str) -> Builder:
    return lambda cfg, shape, classes: build_cifar_resnet(name, shape, classes,
                                                          cfg.get("width", 1.0))


MODELS: dict[str, Builder] = {
    "lenet": lambda cfg, shape, classes: LeNet(shape, classes, cfg.get("width", 1.0)),
    **{name: _torchvision(partial(build_resnet, name))
       for name in ("resnet18", "resnet34", "resnet50")},
    "mobilenet_v2": _torchvision(build_mobilenet_v2),
    **{name: _torchvision(partial(build_vgg, name)) for name in ("vgg11_bn", "vgg16_bn")},
    "mobilenet_v1": _mobilenet_v1,
    **{name: _cifar_resnet(name) for name in DEPTHS},
    **{name: build_vit for name in VIT_SIZES},
    # the user's own callable (any input shape) and the libraries' models, by name
    "custom": build_custom, "torchvision": build_torchvision, "timm": build_timm,
}


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network cfg.name, sized for samples of `input_shape` and `num_classes` outputs, with
    the weights of cfg.checkpoint when it is set."""
    if cfg.name == "mlp":
        model = build_mlp(list(cfg.hidden), cfg.width, input_shape, num_classes)
    elif cfg.name in TEXT_MODELS:  # transformers is imported inside, on use (seconds)
        model = build_text_model(cfg, tuple(input_shape), num_classes)
    elif cfg.name not in MODELS:
        raise PdpruneError(f"model.name={cfg.name}: no such model "
                           f"(choose from mlp, {', '.join(sorted([*MODELS, *TEXT_MODELS]))})")
    elif len(input_shape) != 3 and cfg.name != "custom":
        raise PdpruneError(f"model={cfg.name} needs image inputs (C, H, W), got {input_shape}")
    else:
        model = MODELS[cfg.name](cfg, tuple(input_shape), num_classes)
    if cfg.get("checkpoint"):
        load_weights(model, cfg.checkpoint)
    return model


def build_on_meta(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The architecture of cfg, on the meta device: no memory, no RNG draws, no weights loaded.
    For start-up checks (shapes of a checkpoint, removable blocks, budgets)."""
    import torch
    from omegaconf import OmegaConf

    bare = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if "checkpoint" in bare:
        bare.checkpoint = None
    with torch.device("meta"):
        return build_model(bare, input_shape, num_classes)


__all__ = ["MODELS", "build_model", "build_on_meta"]
