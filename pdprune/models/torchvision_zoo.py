"""torchvision's ResNets, MobileNet-v2 and VGGs (random init) adapted to the data.

Every adapter keeps torchvision's module names for the modules it keeps, so a torchvision
state_dict loads into it (model.checkpoint); a replaced module gets a new shape, and its keys are
skipped at load time. Small images (min(H, W) < 64 px, or small_input=true) get the usual CIFAR
variants, see each builder.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

SMALL_INPUT_BELOW = 64  # px: below this the ImageNet stems would leave almost nothing


def is_small(input_shape: tuple[int, ...], small_input: bool | None) -> bool:
    """small_input if set, else whether the images are under SMALL_INPUT_BELOW px."""
    if small_input is not None:
        return bool(small_input)
    return min(input_shape[1:]) < SMALL_INPUT_BELOW


def _like(conv: nn.Conv2d, in_channels: int, **changes) -> nn.Conv2d:
    """A new Conv2d like `conv` (same out channels, kernel, stride, padding, bias) but reading
    `in_channels` channels, with `changes` applied."""
    args = {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
            "bias": conv.bias is not None}
    return nn.Conv2d(in_channels, conv.out_channels, **(args | changes))


def build_resnet(name: str, input_shape: tuple[int, ...], num_classes: int,
                 small_input: bool | None) -> nn.Module:
    """resnet18/34/50. Small input: conv1 becomes 3x3 stride 1 and the max-pool goes, so a 32 px
    image reaches layer4 at 4x4 (the usual CIFAR ResNet stem)."""
    model = getattr(tvm, name)(weights=None, num_classes=num_classes)
    channels = input_shape[0]
    if is_small(input_shape, small_input):
        model.conv1 = _like(model.conv1, channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = _like(model.conv1, channels)
    return model


def build_mobilenet_v2(input_shape: tuple[int, ...], num_classes: int,
                       small_input: bool | None) -> nn.Module:
    """mobilenet_v2. Small input: the usual CIFAR strides, i.e. the stem conv (features.0) and the
    first 24-channel block (features.2, the first stride-2 stage) run at stride 1: total stride 8
    instead of 32. Only strides change, so every weight keeps its shape."""
    model = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
    stem = model.features[0][0]
    if input_shape[0] != stem.in_channels:
        model.features[0][0] = stem = _like(stem, input_shape[0])
    if is_small(input_shape, small_input):
        stem.stride = (1, 1)
        block = model.features[2]  # InvertedResidual(16 -> 24, stride 2)
        block.conv[1][0].stride = (1, 1)  # its depthwise conv carries the stride
        block.stride, block._is_cn = 1, False  # (16 -> 24 channels: still no residual add)
    return model


def _skip_pools_below_1px(features: nn.Sequential, size: int) -> None:
    """Replace (in place, same index) each max-pool that would shrink a `size` px map below
    1 px by an Identity: 28 px images keep 4 of VGG's 5 pools, 32 px keep all 5."""
    for i, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            if size // 2 < 1:
                features[i] = nn.Identity()
            else:
                size //= 2


def build_vgg(name: str, input_shape: tuple[int, ...], num_classes: int,
              small_input: bool | None) -> nn.Module:
    """vgg11_bn / vgg16_bn. Small input: the usual CIFAR VGG, a global average pool and
    Linear(512, classes) instead of the 7x7 pool and the three 4096-wide layers. Max-pools that
    would take the map below 1 px are skipped (on any input)."""
    model = getattr(tvm, name)(weights=None, num_classes=num_classes)
    channels, height, width = input_shape
    if channels != 3:
        model.features[0] = _like(model.features[0], channels)
    _skip_pools_below_1px(model.features, min(height, width))
    if is_small(input_shape, small_input):
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        last_conv = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
        model.classifier = nn.Linear(last_conv.out_channels, num_classes)  # 512
    return model
