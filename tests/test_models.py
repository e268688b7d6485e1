from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pdprune.errors import PdpruneError
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


# ---------------------------------------------------------------- the model zoo

TORCHVISION = ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "vgg11_bn", "vgg16_bn"]
OURS = ["mobilenet_v1", "resnet20", "resnet32", "resnet56"]
CIFAR_N = {"resnet20": 3, "resnet32": 5, "resnet56": 9}


def zoo(name, shape, classes=10, **keys):
    cfg = OmegaConf.create({"name": name, "small_input": None, "width": 1.0, **keys})
    return build_model(cfg, shape, classes).eval()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def forward(model, shape):
    with torch.no_grad():
        return model(torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)))


def test_every_model_yaml_composes_and_names_a_model(make_cfg):
    from pdprune.config import CONFIG_DIR
    from pdprune.models import MODELS, TEXT_MODELS

    options = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    assert set(options) == {"mlp", *MODELS, *TEXT_MODELS}
    for option in options:
        assert make_cfg(f"model={option}").model.name == option


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 8, 8)])
@pytest.mark.parametrize("name", TORCHVISION + OURS)
def test_zoo_adapts_to_input_and_classes(name, shape):
    assert forward(zoo(name, shape, 7), shape).shape == (2, 7)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models_large_input_path(name):
    model = zoo(name, (1, 64, 64), 5)
    assert forward(model, (1, 64, 64)).shape == (2, 5)
    if name.startswith("resnet"):
        assert model.conv1.kernel_size == (7, 7) and isinstance(model.maxpool, torch.nn.MaxPool2d)
    elif name == "mobilenet_v2":
        assert model.features[0][0].stride == (2, 2)
        assert model.features[2].conv[1][0].stride == (2, 2)
    else:  # torchvision's VGG head: 7x7 pool, three linear layers
        assert len([m for m in model.classifier if isinstance(m, torch.nn.Linear)]) == 3


def test_small_input_can_be_forced_either_way():
    assert zoo("resnet18", (3, 96, 96), small_input=True).conv1.kernel_size == (3, 3)
    assert zoo("resnet18", (3, 32, 32), small_input=False).conv1.kernel_size == (7, 7)
    assert forward(zoo("vgg11_bn", (1, 28, 28), small_input=False), (1, 28, 28)).shape == (2, 10)
    assert zoo("mobilenet_v1", (3, 32, 32), small_input=False).features[0].conv.stride == (2, 2)


def _feature_map(model, stop, shape):
    """Spatial size of the output of `stop` (a submodule) on a `shape` input."""
    seen = []
    handle = stop.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[2:])))
    forward(model, shape)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_small_input_stem(name):
    model = zoo(name, (1, 28, 28))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.in_channels == 1 and isinstance(model.maxpool, torch.nn.Identity)
    assert _feature_map(model, model.layer4, (1, 32, 32)) == (4, 4)


def test_mobilenet_v2_small_input_uses_cifar_strides():
    model = zoo("mobilenet_v2", (3, 32, 32))
    convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    strided = [m for m in convs if m.stride == (2, 2)]
    assert model.features[0][0].stride == (1, 1) and model.features[2].conv[1][0].stride == (1, 1)
    assert model.features[2].out_channels == 24 and not model.features[2].use_res_connect
    assert len(strided) == 3  # of torchvision's 5: total stride 8, 32 px -> 4x4
    assert _feature_map(model, model.features, (3, 32, 32)) == (4, 4)
    assert model.classifier[1].in_features == 1280


@pytest.mark.parametrize(("shape", "pools"), [((3, 32, 32), 5), ((1, 28, 28), 4), ((1, 8, 8), 3)])
def test_vgg_small_input_skips_pools_below_1px_and_has_a_global_pool_head(shape, pools):
    model = zoo("vgg11_bn", shape)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == pools
    assert len(model.features) == 29  # torchvision's indices kept: state_dict keys still match
    assert _feature_map(model, model.features, shape) == (1, 1)
    assert isinstance(model.classifier, torch.nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 10)


def test_mobilenet_v1_structure_and_small_input():
    from pdprune.models.mobilenet_v1 import DepthwiseSeparable

    small, large = zoo("mobilenet_v1", (3, 32, 32)), zoo("mobilenet_v1", (3, 224, 224))
    assert small.features[0].conv.stride == (1, 1) and large.features[0].conv.stride == (2, 2)
    blocks = list(small.features)[1:]
    assert len(blocks) == 13 and all(isinstance(b, DepthwiseSeparable) for b in blocks)
    assert [b.dw.conv.stride[0] for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [b.pw.conv.out_channels for b in blocks] == [64, 128, 128, 256, 256] + [512] * 6 + [
        1024, 1024]
    assert all(b.dw.conv.groups == b.dw.conv.in_channels for b in blocks)
    assert _feature_map(small, small.features, (3, 32, 32)) == (2, 2)


@pytest.mark.parametrize("name", OURS[1:])
def test_cifar_resnet_structure_and_block_removal(name):
    from pdprune.models.cifar_resnet import BasicBlock

    n = CIFAR_N[name]
    model = zoo(name, (3, 32, 32))
    stages = [model.layer1, model.layer2, model.layer3]
    assert [len(s) for s in stages] == [n, n, n]
    assert all(isinstance(b, BasicBlock) for s in stages for b in s)
    projected = [f"layer{i}.{j}" for i, s in enumerate(stages, 1) for j, b in enumerate(s)
                 if b.downsample is not None]
    assert projected == ["layer2.0", "layer3.0"]  # option B, only where the shape changes
    assert [s[0].conv1.stride[0] for s in stages] == [1, 2, 2]
    assert [s[-1].conv2.out_channels for s in stages] == [16, 32, 64]
    assert _feature_map(model, model.layer3, (3, 32, 32)) == (8, 8)
    # a shape-preserving block is a module whose removal leaves its shortcut (identity)
    x = torch.randn(2, 32, 16, 16)
    assert model.layer2[1](x).shape == x.shape
    model.layer2[1] = torch.nn.Identity()
    assert forward(model, (3, 32, 32)).shape == (2, 10)


# Published parameter counts: torchvision's model docs (1000 classes).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "mobilenet_v2": 3_504_872, "vgg11_bn": 132_868_840,
                      "vgg16_bn": 138_365_992}


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_parameter_counts(name):
    assert n_params(zoo(name, (3, 224, 224), 1000)) == TORCHVISION_PARAMS[name]


def _conv(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def _bn(c):
    return 2 * c


def cifar_resnet_params(n, classes, c_in=3, option="B"):
    total, c = _conv(c_in, 16, 3) + _bn(16), 16
    for out in (16, 32, 64):
        for _ in range(n):
            total += _conv(c, out, 3) + _bn(out) + _conv(out, out, 3) + _bn(out)
            if c != out and option == "B":
                total += _conv(c, out, 1) + _bn(out)
            c = out
    return total + 64 * classes + classes


@pytest.mark.parametrize(("name", "published"),
                         [("resnet20", 0.27e6), ("resnet32", 0.46e6), ("resnet56", 0.85e6)])
def test_cifar_resnet_parameter_counts(name, published):
    n = CIFAR_N[name]
    model = zoo(name, (3, 32, 32), 10)
    assert n_params(model) == cifar_resnet_params(n, 10)
    assert abs(cifar_resnet_params(n, 10, option="A") - published) < 0.005e6  # He et al., Table 6
    assert cifar_resnet_params(n, 10) - cifar_resnet_params(n, 10, option="A") == 2752
    assert n_params(zoo(name, (1, 28, 28), 100)) == cifar_resnet_params(n, 100, c_in=1)


def mobilenet_v1_params(alpha, classes, c_in=3):
    widths = [round(c * alpha) for c in (32, 64, 128, 128, 256, 256) + (512,) * 6 + (1024, 1024)]
    total = _conv(c_in, widths[0], 3) + _bn(widths[0])
    for c, out in zip(widths[:-1], widths[1:], strict=True):
        total += c * 9 + _bn(c) + _conv(c, out, 1) + _bn(out)  # depthwise, pointwise
    return total + widths[-1] * classes + classes


@pytest.mark.parametrize(("alpha", "published"),
                         [(1.0, 4.2e6), (0.75, 2.6e6), (0.5, 1.3e6), (0.25, 0.5e6)])
def test_mobilenet_v1_parameter_counts_and_width(alpha, published):
    model = zoo("mobilenet_v1", (3, 224, 224), 1000, width=alpha)
    assert n_params(model) == mobilenet_v1_params(alpha, 1000)
    assert abs(n_params(model) - published) < 0.05e6  # Howard et al., Table 6 (to 0.1M)


def test_small_input_parameter_counts():
    # CIFAR VGG-11: torchvision's features (conv + bias, BN) and Linear(512, 10)
    channels, total = 3, 0
    for out in (64, 128, 256, 256, 512, 512, 512, 512):
        total, channels = total + _conv(channels, out, 3, bias=True) + _bn(out), out
    assert n_params(zoo("vgg11_bn", (3, 32, 32))) == total + 512 * 10 + 10 == 9_231_114
    # MobileNet-v2: only strides change, so the ImageNet count less the 1000-class head
    assert n_params(zoo("mobilenet_v2", (3, 32, 32))) == 3_504_872 - 1281 * 1000 + 1281 * 10
    # ResNet-18: 7x7x3x64 stem -> 3x3x3x64
    assert n_params(zoo("resnet18", (3, 32, 32))) == 11_689_512 - 1000 * 513 + 10 * 513 - 40 * 192


def test_cifar_resnet_width_scales():
    base = n_params(zoo("resnet20", (3, 32, 32)))
    assert n_params(zoo("resnet20", (3, 32, 32), width=2.0)) > 3.8 * base
    assert n_params(zoo("resnet20", (3, 32, 32), width=0.5)) < 0.3 * base
    assert zoo("resnet20", (3, 32, 32), width=2.0).layer3[0].conv1.out_channels == 128


# ---------------------------------------------------------------- model.checkpoint

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v1"])
def test_checkpoint_round_trip(tmp_path, name, suffix):
    from safetensors.torch import save_file

    shape = (3, 32, 32)
    torch.manual_seed(0)
    source = zoo(name, shape, 10, width=0.5)
    for m in source.modules():  # non-default running statistics, so that buffers matter too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / f"model{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    torch.save(state, path) if suffix == ".pt" else save_file(state, str(path))
    torch.manual_seed(1)
    fresh = zoo(name, shape, 10, width=0.5)
    assert not torch.equal(forward(fresh, shape), forward(source, shape))
    loaded = zoo(name, shape, 10, width=0.5, checkpoint=str(path))
    assert torch.equal(forward(loaded, shape), forward(source, shape))


def test_checkpoint_skips_keys_of_another_shape(tmp_path, caplog):
    path = tmp_path / "imagenet_like.pth"
    source = zoo("resnet18", (3, 224, 224), 1000)  # a torchvision-style ImageNet state_dict
    torch.save(source.state_dict(), path)
    with caplog.at_level("INFO", logger="pdprune"):
        model = zoo("resnet18", (3, 32, 32), 10, checkpoint=str(path))
    skipped = {r.getMessage().split(":")[1] for r in caplog.records
               if r.getMessage().startswith("model.checkpoint: skipped")}
    assert skipped == {" skipped conv1.weight", " skipped fc.weight", " skipped fc.bias"}
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.out_features == 10 and model.conv1.kernel_size == (3, 3)


def test_checkpoint_without_batch_norm_counters_loads(tmp_path):
    source = zoo("resnet20", (3, 32, 32))
    path = tmp_path / "old.pt"
    torch.save({k: v for k, v in source.state_dict().items()
                if not k.endswith("num_batches_tracked")}, path)
    loaded = zoo("resnet20", (3, 32, 32), checkpoint=str(path))
    assert torch.equal(forward(loaded, (3, 32, 32)), forward(source, (3, 32, 32)))


@pytest.mark.parametrize(("saved", "loaded", "message"), [
    ("resnet32", "resnet20", "keys the model does not have: layer1.3.conv1.weight"),
    ("resnet20", "resnet32", "of the model's keys are not in it: layer1.3.conv1.weight"),
])
def test_checkpoint_with_other_keys_fails_in_one_line(tmp_path, saved, loaded, message):
    path = tmp_path / f"{saved}.pt"
    torch.save(zoo(saved, (3, 32, 32)).state_dict(), path)
    with pytest.raises(PdpruneError) as err:
        zoo(loaded, (3, 32, 32), checkpoint=str(path))
    text = str(err.value)
    assert text.startswith(f"model.checkpoint={path}: ") and message in text and "\n" not in text


def test_unreadable_checkpoint_fails_in_one_line(tmp_path):
    for path, message in ((tmp_path / "junk.pt", "cannot read it"),
                          (tmp_path / "junk.safetensors", "cannot read it")):
        path.write_bytes(b"not a checkpoint\n" * 10)
        with pytest.raises(PdpruneError, match=f"model.checkpoint={path}: {message}") as err:
            zoo("resnet20", (3, 32, 32), checkpoint=str(path))
        assert "\n" not in str(err.value)
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(PdpruneError, match="not a state_dict"):
        zoo("resnet20", (3, 32, 32), checkpoint=str(path))


def test_missing_checkpoint_fails_at_start_up():
    from pdprune.config.preflight import check

    with pytest.raises(PdpruneError) as err:
        check(["model=resnet20", "model.checkpoint=/nope"])
    assert str(err.value) == "model.checkpoint=/nope: no such file"
