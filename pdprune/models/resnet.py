"""torchvision ResNets adapted to the data: input channels, classes, a small-image stem."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

SMALL_INPUT_BELOW = 64  # px: below this the 7x7/2 stem + max-pool would leave almost nothing


def build_torchvision_resnet(name: str, input_shape: tuple[int, ...], num_classes: int,
                             small_input: bool | None) -> nn.Module:
    model = getattr(tvm, name)(weights=None, num_classes=num_classes)
    channels, height, width = input_shape
    small = min(height, width) < SMALL_INPUT_BELOW if small_input is None else small_input
    if small:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
