"""The small models: an MLP and a LeNet-style CNN, both with a width multiplier."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn


def scaled(size: int, width: float) -> int:
    return max(1, round(size * width))


def build_mlp(hidden: list[int], width: float, input_shape: tuple[int, ...],
              num_classes: int) -> nn.Sequential:
    sizes = [math.prod(input_shape)] + [scaled(h, width) for h in hidden]
    layers: dict[str, nn.Module] = {"flatten": nn.Flatten()}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, fan_out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    layers["classifier"] = nn.Linear(sizes[-1], num_classes)
    return nn.Sequential(OrderedDict(layers))


def _pool_if_it_fits(height: int, width: int) -> tuple[nn.Module, int, int]:
    """A 2x2 max-pool and the map size after it; no pool once the map is 1 px wide."""
    if min(height, width) >= 2:
        return nn.MaxPool2d(2), height // 2, width // 2
    return nn.Identity(), height, width


class LeNet(nn.Module):
    """conv5x5 -> pool -> conv5x5 -> pool -> fc -> fc -> fc. Convs are 'same'-padded and a pool
    is skipped once the map is 1 px wide, so 8x8 digits and 28x28 images both fit."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        channels, height, wide = input_shape
        c1, c2 = scaled(6, width), scaled(16, width)
        h1, h2 = scaled(120, width), scaled(84, width)
        pool1, height, wide = _pool_if_it_fits(height, wide)
        pool2, height, wide = _pool_if_it_fits(height, wide)
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2), nn.ReLU(inplace=True), pool1,
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), pool2,
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * height * wide, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
