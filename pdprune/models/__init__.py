"""Models keyed by name; torchvision does the real work where it can."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from ..errors import PdpruneError
from .resnet import build_torchvision_resnet
from .small import LeNet, build_mlp


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network cfg.name, sized for samples of `input_shape` and `num_classes` outputs."""
    if cfg.name == "mlp":
        return build_mlp(list(cfg.hidden), cfg.width, input_shape, num_classes)
    if len(input_shape) != 3:
        raise PdpruneError(f"model={cfg.name} needs image inputs (C, H, W), got {input_shape}")
    if cfg.name == "lenet":
        return LeNet(input_shape, num_classes, cfg.width)
    if cfg.name.startswith("resnet"):
        return build_torchvision_resnet(cfg.name, input_shape, num_classes, cfg.small_input)
    raise PdpruneError(f"model.name={cfg.name}: no such model")


__all__ = ["build_model"]
