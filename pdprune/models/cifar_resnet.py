"""He et al. (2016)'s CIFAR ResNets: depth 6n+2 (resnet20: n=3, resnet32: 5, resnet56: 9).

conv3x3 (16) + BN + ReLU, three stages (layer1..layer3) of n BasicBlocks with 16, 32, 64 channels
(times `width`), stride 2 at the start of layer2 and layer3, global average pool, Linear (fc).

Shortcuts are option B: where a block changes the shape (first block of layer2 and layer3) the
shortcut is a 1x1 conv + BN projection (`downsample`, torchvision's name), identity elsewhere.
Unlike option A's zero-padded strided identity it is an ordinary layer, which Torch-Pruning's
dependency graph and whole-block removal handle. It costs 2,752 parameters more on resnet20.

Every block whose input and output shapes agree computes relu(x + f(x)), so replacing it
(model.layer2[1] = nn.Identity()) removes the block and leaves its shortcut.
"""

from __future__ import annotations

from torch import nn

from .small import scaled

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet56": 9}  # n blocks per stage
STAGES = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3x3 + BN + ReLU, conv3x3 + BN, add the shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, in_channels: int, num_classes: int,
                 width: float = 1.0):
        super().__init__()
        widths = [scaled(c, width) for c in STAGES]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        for stage, out in enumerate(widths, start=1):
            blocks = []
            for i in range(blocks_per_stage):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(BasicBlock(channels, out, stride))
                channels = out
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def build_cifar_resnet(name: str, input_shape: tuple[int, ...], num_classes: int,
                       width: float = 1.0) -> CifarResNet:
    return CifarResNet(DEPTHS[name], input_shape[0], num_classes, width)
