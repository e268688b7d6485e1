from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pdprune.models import build_model


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet18"])
def test_models_adapt_to_input_and_classes(name, shape):
    cfg = OmegaConf.create({"name": name, "hidden": [16], "width": 0.5, "small_input": None})
    model = build_model(cfg, shape, 7).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_width_multiplier_scales_small_models():
    def params(name, width):
        cfg = OmegaConf.create({"name": name, "hidden": [100, 100], "width": width})
        return sum(p.numel() for p in build_model(cfg, (1, 28, 28), 10).parameters())

    for name in ("mlp", "lenet"):
        assert params(name, 2.0) > 1.8 * params(name, 1.0) > 3 * params(name, 0.5)


def test_resnet18_small_input_stem():
    cfg = OmegaConf.create({"name": "resnet18", "small_input": None})
    small = build_model(cfg, (1, 32, 32), 10)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert small.conv1.in_channels == 1 and isinstance(small.maxpool, torch.nn.Identity)
    large = build_model(cfg, (3, 96, 96), 10)
    assert large.conv1.kernel_size == (7, 7) and large.fc.out_features == 10
