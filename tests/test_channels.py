"""granularity=channel: coupled groups, the PDP channel mask, hardening, compact export."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from pdprune.errors import PdpruneError
from pdprune.export.compact import TOLERANCE, compact_model, max_abs_difference
from pdprune.export.portable import save_onnx, save_program
from pdprune.measure.cost import parameter_counts
from pdprune.models import build_model
from pdprune.pruning import build_pruner
from pdprune.pruning.selection import round_kept

from .test_pruner import train_steps

TAU = 0.01


def channel_cfg(make_cfg, *overrides):
    """Exact per-group budgets (no rounding of kept channels) unless an override sets it."""
    return make_cfg("granularity=channel", "granularity.round_to=1", "trainer.epochs=4",
                    *overrides)


def planted() -> nn.Module:
    """1x1 conv with channel norms 0.1, 0.2, 0.4 -> BN -> ReLU -> classifier."""
    net = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.1, -0.2, 0.4]).reshape(3, 1, 1, 1))
        net[1].weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        net[1].bias.copy_(torch.tensor([0.5, 0.5, 0.5]))
    return net


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_pdp_channel_mask_matches_hand_computed_values_and_stays_in_the_graph(make_cfg):
    net = planted()
    cfg = channel_cfg(make_cfg, "method=pdp", f"method.tau={TAU}", "method.budget=uniform",
                      "sparsity=0.34")
    pruner = build_pruner(cfg, net, steps_per_epoch=2, input_shape=(1, 2, 2))
    assert [g.root for g in pruner.structure.groups] == ["0"]
    assert [m.name for m in pruner.structure.groups[0].members] == ["0", "1"]  # conv and its BN
    pruner.set_sparsity(0.34)
    assert pruner.counts == [1]
    # t = midpoint of the norms either side of the cut = (0.1 + 0.2) / 2
    t2 = 0.15 ** 2
    hand = [sigmoid((n * n - t2) / TAU) for n in (0.1, 0.2, 0.4)]
    gamma = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(net[1].weight, gamma * torch.tensor(hand), rtol=1e-5)
    assert torch.allclose(net[1].bias, 0.5 * torch.tensor(hand), rtol=1e-5)
    assert torch.allclose(net[0].weight.flatten(), torch.tensor([0.1, -0.2, 0.4]) *
                          torch.tensor(hand), rtol=1e-5)
    # d(gamma_c m_c)/dw_c = gamma_c m_c (1 - m_c) 2 w_c / tau: the mask is differentiated
    net[1].weight.sum().backward()
    grad = net[0].parametrizations.weight.original.grad.flatten()
    want = [g * m * (1 - m) * 2 * w / TAU for g, m, w in zip((1.0, 2.0, 3.0), hand,
                                                              (0.1, -0.2, 0.4), strict=True)]
    # atol: for the strong channel 1 - m ~ 1e-6 sits at float32's resolution near 1
    assert torch.allclose(grad, torch.tensor(want), rtol=1e-4, atol=1e-5)


def counted(compute, calls: list[int]):
    def wrapper():
        calls.append(1)
        return compute()
    return wrapper


def test_soft_masks_are_computed_once_per_forward_with_unchanged_gradients(make_cfg):
    cfg = channel_cfg(make_cfg, "model=resnet20", "method=pdp", "sparsity=0.5")
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    grads, computed = [], []
    for shared in (True, False):
        torch.manual_seed(0)
        model = build_model(cfg.model, (1, 12, 12), 10)
        pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(1, 12, 12))
        pruner.set_sparsity(0.5)
        if not shared:  # without the forward scope every member recomputes its group's mask
            for hook in pruner.structure._hooks:
                hook.remove()
        calls: list[int] = []
        for mask in pruner.structure.masks:
            mask._compute = counted(mask._compute, calls)
        model(x).square().sum().backward()
        computed.append(len(calls))
        grads.append([p.grad.clone() for p in model.parameters()])
    assert computed[0] == len(pruner.structure.groups) < computed[1]
    for cached, fresh in zip(*grads, strict=True):
        torch.testing.assert_close(cached, fresh)


def test_hardening_zeroes_the_weakest_channel_everywhere(make_cfg):
    net = planted()
    cfg = channel_cfg(make_cfg, "method=pdp", "method.budget=uniform", "sparsity=0.34")
    pruner = build_pruner(cfg, net, steps_per_epoch=2, input_shape=(1, 2, 2))
    results = pruner.finalize()
    assert net[0].weight.flatten().tolist() == pytest.approx([0.0, -0.2, 0.4])
    assert net[1].weight.tolist() == [0.0, 2.0, 3.0] and net[1].bias.tolist() == [0, 0.5, 0.5]
    assert [(r.name, r.pruned, r.expected_pruned) for r in results] == [("0", 1, 1)]
    assert pruner.summary_sections()["channels"]["pruned"] == 1
    assert pruner.export_plan().removed_units["0"].tolist() == [0]


MODELS = [("resnet18", (3, 32, 32)), ("resnet50", (3, 32, 32)), ("mobilenet_v2", (3, 32, 32)),
          ("resnet20", (1, 28, 28)), ("vgg11_bn", (3, 32, 32)), ("mobilenet_v1", (3, 32, 32)),
          ("lenet", (1, 28, 28)), ("mlp", (1, 8, 8))]


def trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as after training."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize(("name", "shape"), MODELS)
def test_compact_model_equals_masked_model(make_cfg, name, shape):
    cfg = channel_cfg(make_cfg, f"model={name}", "method=gmp", "sparsity=0.5")
    model = trained_like(build_model(cfg.model, shape, 10))
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=shape)
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert all(classifier is not pruner.structure.modules[m.name] for g in pruner.structure.groups
               for m in g.members)  # its outputs are the classes
    pruner.finalize()
    summary = pruner.summary_sections()["channels"]
    assert summary["pruned"] == summary["expected_pruned"] == round(0.5 * summary["total"])
    batch = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    compact, check = compact_model(model, pruner.export_plan().removed_units, batch)
    assert check.fp64 <= 1e-9 and check.fp32 <= TOLERANCE  # the same function
    assert max_abs_difference(model, compact, batch * 3, torch.float64) <= 1e-9  # any batch
    dense, small = parameter_counts(model)[0], parameter_counts(compact)[0]
    assert small < 0.4 * dense, (small, dense)
    assert compact(batch).shape == (8, 10)
    first = next(m for m in compact.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert first.weight.shape[1] == shape[0] or isinstance(first, nn.Linear)  # input channels


def test_residual_members_share_one_mask(make_cfg):
    cfg = channel_cfg(make_cfg, "model=resnet20", "method=magnitude", "sparsity=0.5")
    model = build_model(cfg.model, (1, 28, 28), 10)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(1, 28, 28))
    stage1 = next(g for g in pruner.structure.groups
                  if "layer1.0.conv2" in [m.name for m in g.members])
    assert {"conv1", "bn1", "layer1.0.bn2", "layer1.1.conv2", "layer1.2.conv2"} <= \
        {m.name for m in stage1.members}
    pruner.finalize()
    zero_rows = [set((pruner.structure.modules[n].weight.flatten(1) == 0).all(1).nonzero().flatten()
                     .tolist()) for n in ("conv1", "layer1.0.conv2", "layer1.2.conv2")]
    assert zero_rows[0] == zero_rows[1] == zero_rows[2] and len(zero_rows[0]) == 8


def test_pdp_training_then_compact(make_cfg):
    cfg = channel_cfg(make_cfg, "model=resnet20", "method=pdp", "sparsity=0.5",
                      "schedule.warmup_epochs=1", "schedule.ramp_epochs=2")
    model = build_model(cfg.model, (1, 12, 12), 10)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(1, 12, 12))
    train_steps(model, pruner, 8, shape=(1, 12, 12), classes=10, lr=0.05)
    assert pruner.target_sparsity == pytest.approx(0.5, abs=0.01)
    pruner.finalize()
    batch = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    _, check = compact_model(model, pruner.export_plan().removed_units, batch)
    assert check.fp64 <= 1e-9 and check.fp32 <= TOLERANCE


def test_round_kept_moves_budgets_to_whole_blocks():
    # kept 32, 31, 58, 5 of 64, 64, 128, 10 (126 in all) -> 32, 32, 56, 8 (128): each a
    # multiple of 8; 31 moved up (nearest), 58 down; a 10-channel group keeps 8
    assert round_kept([64, 64, 128, 10], [32, 33, 70, 5], 8) == [32, 32, 72, 2]
    assert round_kept([6, 16], [3, 9], 8) == [0, 8]  # a group smaller than a block stays whole
    assert round_kept([64, 64], [33, 31], 1) == [33, 31]
    assert round_kept([4, 64], [4, 30], 1) == [3, 30]  # no group is pruned whole


@pytest.mark.parametrize("method", ["gmp", "pdp"])
def test_kept_channels_are_whole_blocks_of_round_to(make_cfg, method):
    cfg = channel_cfg(make_cfg, "model=mobilenet_v2", f"method={method}", "sparsity=0.5",
                      "granularity.round_to=8")
    shape = (1, 12, 12)
    model = trained_like(build_model(cfg.model, shape, 10))
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=shape)
    train_steps(model, pruner, 3, shape=shape, classes=10, lr=0.01)
    pruner.finalize()
    kept = {root: int(k.sum()) for root, k in pruner.structure.kept.items()}
    sizes = {g.root: g.channels for g in pruner.structure.groups}
    assert all(n % 8 == 0 or n == sizes[root] for root, n in kept.items()), kept
    summary = pruner.summary_sections()["channels"]
    assert summary["pruned"] == summary["expected_pruned"]
    assert abs(summary["fraction"] - 0.5) < 0.02, summary  # rounding moves the total little
    compact, _ = compact_model(model, pruner.export_plan().removed_units, torch.randn(4, *shape))
    convs = [m for m in compact.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs), [c.out_channels for c in convs]


def test_a_compact_model_that_changes_outputs_is_refused(make_cfg):
    cfg = channel_cfg(make_cfg, "model=lenet", "method=magnitude", "sparsity=0.5")
    model = build_model(cfg.model, (1, 28, 28), 10)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(1, 28, 28))
    pruner.finalize()
    pruned = pruner.export_plan().removed_units
    root = next(iter(pruned))
    with torch.no_grad():  # a pruned channel that still carries a bias: removing it changes y
        pruner.structure.modules[root].bias[pruned[root][0]] = 1.0
    with pytest.raises(PdpruneError, match="differ from the masked model's by .* in float64"):
        compact_model(model, pruned, torch.randn(4, 1, 28, 28))


def test_program_and_onnx_load_without_pdprune(tmp_path, make_cfg):
    cfg = channel_cfg(make_cfg, "model=resnet20", "method=magnitude", "sparsity=0.5")
    model = trained_like(build_model(cfg.model, (1, 16, 16), 10))
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(1, 16, 16))
    pruner.finalize()
    batch = torch.randn(4, 1, 16, 16)
    compact, _ = compact_model(model, pruner.export_plan().removed_units, batch)
    assert save_program(compact, batch, tmp_path / "m.pt2") <= TOLERANCE
    assert save_onnx(compact, batch, tmp_path / "m.onnx") <= 1e-4
    torch.save(compact.eval()(batch), tmp_path / "want.pt")
    code = ("import sys, torch\n"
            "assert 'pdprune' not in sys.modules\n"
            "m = torch.export.load(sys.argv[1] + '/m.pt2').module()\n"
            "x = torch.randn(7, 1, 16, 16)\n"
            "assert m(x).shape == (7, 10)\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=tmp_path)
