"""MobileNet-v1 (Howard et al. 2017), which torchvision lacks.

conv3x3/2 (32) + BN + ReLU, then 13 depthwise-separable blocks (depthwise 3x3 + BN + ReLU,
pointwise 1x1 + BN + ReLU), global average pool, Linear. Every width is scaled by the width
multiplier alpha (`width`). Small images: the stem runs at stride 1 (the usual CIFAR MobileNet).
"""

from __future__ import annotations

import math

from torch import nn

from .small import scaled

# (output channels, stride) of the 13 depthwise-separable blocks, Table 1 of the paper
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM = 32


class ConvBNReLU(nn.Sequential):
    """conv (no bias) + BN + ReLU; groups=in_channels makes it depthwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (carries the stride) then pointwise 1x1, each + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.dw = ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pw = ConvBNReLU(in_channels, out_channels, 1)


class MobileNetV1(nn.Module):
    """features.0 is the stem, features.1 .. features.13 the blocks; then pool and classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0,
                 small_input: bool = False):
        super().__init__()
        channels = scaled(STEM, width)
        layers: list[nn.Module] = [ConvBNReLU(in_channels, channels, 3, 1 if small_input else 2)]
        for out, stride in BLOCKS:
            layers.append(DepthwiseSeparable(channels, scaled(out, width), stride))
            channels = scaled(out, width)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init on the true fan-out, k*k*out/groups (as timm)
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
