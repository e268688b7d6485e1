"""SET, RigL and GraNet: ERK densities, the cosine drop fraction, the drop and regrow choices
against hand-computed values, exact sparsity at every step, zero-initialised regrowth, resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pdprune
from pdprune.errors import ConfigError, PdpruneError
from pdprune.pruning.erk import densities, kept_counts
from pdprune.pruning.regrowth import UpdateTimes, drop_and_grow
from pdprune.run import run

from .test_resume import check_resume

# conv (4, 1, 3, 3), linear (8, 16), linear (2, 8): 36 + 128 + 16 = 180 weights
SHAPES = [(4, 1, 3, 3), (8, 16), (2, 8)]


def test_erk_densities_by_hand_with_a_layer_made_dense():
    # raw sum/prod: 11/36, 24/128, 10/16; at s = 0.5 the kept budget is 90.
    # eps = 90 / (11 + 24 + 10) = 2 puts the last layer at 1.25 > 1: it goes dense, and
    # eps = (90 - 16) / (11 + 24) = 74 / 35 for the others
    assert densities(SHAPES, 0.5, "erk") == pytest.approx(
        [74 / 35 * 11 / 36, 74 / 35 * 24 / 128, 1.0], rel=1e-12)
    # 814/35 = 23.26 and 1776/35 = 50.74 kept: floors 23 + 50 + 16 = 89, the one left over
    # goes to the larger remainder (the linear's)
    assert kept_counts(SHAPES, 0.5, "erk") == [23, 51, 16]
    assert densities(SHAPES, 0.5, "uniform") == [0.5] * 3
    assert kept_counts(SHAPES, 0.5, "uniform") == [18, 64, 8]


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9, 0.95])
def test_total_kept_is_exactly_the_target(distribution, sparsity):
    shapes = [(16, 3, 3, 3), (32, 16, 3, 3), (10, 512), (7, 13)]
    kept = kept_counts(shapes, sparsity, distribution)
    sizes = [math.prod(s) for s in shapes]
    assert sum(kept) == round((1 - sparsity) * sum(sizes))
    assert all(0 < k <= n for k, n in zip(kept, sizes, strict=True))


def test_a_layer_left_without_weights_is_refused_naming_sparsity():
    with pytest.raises(ConfigError, match="sparsity.*keeps no weight"):
        kept_counts(SHAPES, 0.99, "erk")  # 2 weights kept: the largest remainders take them


def test_cosine_drop_fraction_and_update_steps():
    times = UpdateTimes(every=100, end=750, alpha=0.3)
    assert [times.due(t) for t in (0, 50, 100, 700, 750, 800)] == [True, False, True, True,
                                                                   False, False]
    assert times.fraction(0) == pytest.approx(0.3)
    assert times.fraction(250) == pytest.approx(0.15 * (1 + 0.5))  # cos(pi / 3) = 1/2
    assert times.fraction(375) == pytest.approx(0.15)
    assert times.fraction(750) == pytest.approx(0.0, abs=1e-12)
    granet = UpdateTimes(every=10, end=100, alpha=0.5, start=5)  # GMP's updates: t0 + k dt
    assert [granet.due(t) for t in (0, 5, 10, 15, 95, 105)] == [False, True, False, True,
                                                               True, False]


def test_drop_and_grow_choices_by_hand():
    active = torch.tensor([True] * 4 + [False] * 4)
    magnitudes = torch.tensor([0.5, 0.1, 0.3, 0.2, 0.0, 0.0, 0.0, 0.0])
    scores = torch.tensor([0.0, 0.9, 0.0, 0.0, 0.4, 0.8, 0.1, 0.7])
    # drop 1 (0.1) and 3 (0.2); grow among 1, 3..7: 1 (0.9, just dropped: eligible) and 5 (0.8)
    new = drop_and_grow(active, magnitudes, scores, 2)
    assert new.nonzero().flatten().tolist() == [0, 1, 2, 5]
    # ties: the lower index drops first, and grows first
    new = drop_and_grow(active, torch.full((8,), 0.3), torch.zeros(8), 1)
    assert new.nonzero().flatten().tolist() == [0, 1, 2, 3]  # 0 dropped, then 0 grown again
    new = drop_and_grow(active, torch.tensor([0.3, 0.3, 0.3, 0.3, 0, 0, 0, 0]),
                        torch.tensor([0.0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5]), 1)
    assert new.nonzero().flatten().tolist() == [1, 2, 3, 4]


# ---------------------------------------------------------------- one hand-set layer

# the pruned layer: Linear(4 -> 2), 8 weights, half active (row 0), inactive ones stored as 9
WEIGHTS = torch.tensor([[0.5, -0.1, 0.3, -0.2], [9.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[True] * 4, [False] * 4])
GRAD = torch.tensor([[0.0, 0.9, 0.0, 0.0], [-0.4, 0.8, 0.1, -0.7]])  # dL/d(w * mask)


def hand_set(method: str, settings: dict, epochs: int = 1):
    """A model whose only pruned layer holds WEIGHTS under MASK with momentum 1 everywhere,
    after the pruner's own step-0 masks; then one backward with dL/d(w * mask) = GRAD and
    after_backward (step 0 is an update step)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 2))
    pruning = pdprune.Pruning(model, method=method, sparsity=0.5, steps_per_epoch=4,
                              epochs=epochs, settings=settings)
    layer = model[0]
    weight = layer.parametrizations.weight.original
    with torch.no_grad():
        weight.copy_(WEIGHTS)
        layer.parametrizations.weight[0].mask.copy_(MASK)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.state[weight]["momentum_buffer"] = torch.ones(2, 4)
    pruning.bind(opt)
    (layer.weight * GRAD).sum().backward()
    pruning.after_backward()
    return layer, weight, opt.state[weight]["momentum_buffer"]


def check_swap(layer, weight, momentum, active: list[int]) -> None:
    mask = layer.parametrizations.weight[0].mask
    assert mask.flatten().nonzero().flatten().tolist() == active
    fresh = mask & ~MASK
    assert torch.equal(weight[fresh], torch.zeros(int(fresh.sum())))  # regrown at zero
    assert torch.equal(momentum[fresh], torch.zeros(int(fresh.sum())))  # and no momentum
    assert torch.equal(weight[~fresh], WEIGHTS[~fresh])  # everything else untouched
    assert torch.equal(momentum[~fresh], torch.ones(int((~fresh).sum())))


def test_rigl_regrows_the_largest_dense_gradients():
    # f(0) = alpha = 0.5 of 4 active: floor(2.0) = 2 dropped (1 and 3), grown by |GRAD| among
    # the inactive: 1 (0.9, kept as it was) and 5 (0.8, new: zero weight, zero momentum)
    layer, weight, momentum = hand_set("rigl", {"method.delta_t": 1, "method.alpha": 0.5})
    check_swap(layer, weight, momentum, [0, 1, 2, 5])


def test_granet_drops_a_ceiled_fraction_and_regrows_by_gradient():
    # r(0) = alpha = 0.3 of 4 active = 1.2: GraNet rounds up, 2 go (RigL would drop 1)
    settings = {"method.alpha": 0.3, "method.budget": "uniform", "schedule.start_epoch": 0,
                "schedule.end_epoch": 1, "schedule.dt": 1, "schedule.initial_sparsity": 0.5}
    layer, weight, momentum = hand_set("granet", settings, epochs=2)
    check_swap(layer, weight, momentum, [0, 1, 2, 5])


def test_set_regrows_as_many_at_random_from_its_seed():
    layer, weight, momentum = hand_set("set", {"method.delta_t": 1, "method.alpha": 0.5,
                                               "method.seed": 3})
    # the same draw: one generator from method.seed, scores for the layer's 8 weights
    scores = torch.rand(8, generator=torch.Generator().manual_seed(3))
    expected = drop_and_grow(MASK.flatten(), WEIGHTS.abs().flatten(), scores, 2)
    check_swap(layer, weight, momentum, expected.nonzero().flatten().tolist())
    again, _, _ = hand_set("set", {"method.delta_t": 1, "method.alpha": 0.5, "method.seed": 3})
    assert torch.equal(again.parametrizations.weight[0].mask,
                       layer.parametrizations.weight[0].mask)


# ---------------------------------------------------------------- short runs


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16),
                         nn.ReLU(), nn.Linear(16, 4))


GRANET_SHORT = {"schedule.start_epoch": 1, "schedule.end_epoch": 3, "schedule.dt": 2}


@pytest.mark.parametrize("method,settings,after_backward", [
    ("set", {"method.delta_t": 2}, True),
    ("rigl", {"method.delta_t": 2}, True),
    ("rigl", {"method.delta_t": 3, "method.distribution": "uniform"}, False),
    ("granet", GRANET_SHORT, True),
    ("granet", GRANET_SHORT, False),
])
def test_sparsity_is_exact_after_every_step(method, settings, after_backward):
    """Every layer keeps exactly its budget's count after every optimizer step; weights that
    became active start at zero with zero momentum. Without after_backward (a step()-only
    loop) the update runs at the next step(), and the counts hold the same."""
    model, steps, epochs = cnn(), 4, 4
    pruning = pdprune.Pruning(model, method=method, sparsity=0.8, steps_per_epoch=steps,
                              epochs=epochs, settings=settings)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruning.bind(opt)
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 1, 8, 8, generator=gen), torch.randint(4, (16,), generator=gen))
            for _ in range(steps)]
    structure = pruning.core.structure
    total = structure.num_prunable
    swapped = 0
    for step in range(steps * epochs):
        x, y = data[step % steps]
        before = [layer.mask.mask.clone() for layer in structure.layers]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if after_backward:
            pruning.after_backward()
        opt.step()
        pruning.step()
        for layer, old, count, size in zip(structure.layers, before, pruning.core.counts,
                                           structure.sizes(), strict=True):
            mask = layer.mask.mask
            assert int(mask.sum()) == size - count, (step, layer.name)
            fresh = mask & ~old  # (GraNet's magnitude cut only removes)
            swapped += int(fresh.sum())
            assert not layer.original[fresh].any()
            assert not opt.state[layer.original]["momentum_buffer"][fresh].any()
        if method != "granet":  # sparse from the start: the target, exactly, at every step
            kept = sum(int(layer.mask.mask.sum()) for layer in structure.layers)
            assert kept == round(0.2 * total)
        if (step + 1) % steps == 0:
            pruning.end_epoch()
    assert swapped > 0
    summary = pruning.finalize()
    assert summary["pruned_weights"] == sum(pruning.core.counts)
    assert summary["prunable_weights"] == total
    if method != "granet":
        assert total - summary["pruned_weights"] == round(0.2 * total)
    else:
        assert summary["pruned_weights"] == round(0.8 * total)  # the global cut's


def test_regrowth_needs_the_optimizer():
    model = cnn()
    pruning = pdprune.Pruning(model, method="rigl", sparsity=0.5, steps_per_epoch=2, epochs=1,
                              settings={"method.delta_t": 1})
    F.cross_entropy(model(torch.randn(2, 1, 8, 8)), torch.tensor([0, 1])).backward()
    with pytest.raises(PdpruneError, match="bind the optimizer"):
        pruning.after_backward()


@pytest.mark.parametrize("method,settings,key", [
    ("rigl", {"method.distribution": "er"}, "method.distribution"),
    ("set", {"method.delta_t": 0}, "method.delta_t"),
    ("set", {"method.alpha": 1.5}, "method.alpha"),
    ("rigl", {"method.t_end": 0.0}, "method.t_end"),
    ("rigl", {"granularity": "nm"}, "granularity"),
    ("granet", {"schedule": "oneshot"}, "schedule"),
])
def test_bad_settings_are_one_line_naming_the_key(method, settings, key):
    settings = dict(settings)
    granularity, schedule = settings.pop("granularity", None), settings.pop("schedule", None)
    with pytest.raises(ConfigError) as error:
        pdprune.compose_config(method, 0.5, granularity, schedule, 4, settings)
    assert error.value.key == key


DST_RUN = ("dataset=synthetic", "model.hidden=[32,16]", "trainer.epochs=3",
           "trainer.progress=false")


@pytest.mark.parametrize("method,overrides", [
    ("set", ["method.delta_t=3", "method.t_end=1.0"]),
    ("rigl", ["method.delta_t=3", "method.t_end=1.0"]),
    ("granet", ["schedule.dt=3"]),
])
def test_resume_is_bit_equal(make_cfg, tmp_path, monkeypatch, method, overrides):
    """Killed after epoch 2 (step 16 of 24; updates every 3 steps, at 18 and 21 after the
    kill): the masks, the weights and SET's generator continue exactly."""
    check_resume(make_cfg, tmp_path, monkeypatch, [*DST_RUN, f"method={method}", *overrides])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["set", "rigl", "granet"])
def test_smoke_ends_at_the_target(make_cfg, tmp_path, method):
    summary = run(make_cfg("experiment=smoke", f"method={method}"), tmp_path)
    check = summary["sparsity_check"]
    assert check["exact"] and check["pruned"] == check["expected_pruned"]
    assert abs(summary["achieved_sparsity"] - 0.9) < 1 / summary["prunable_params"] + 1e-12
