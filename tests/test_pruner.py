"""The pruner on real models: exact counts, pruned weights staying pruned, hardening and baking."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pdprune.models import build_model
from pdprune.pruning import build_pruner
from pdprune.pruning.targets import select_targets


def mlp() -> nn.Module:
    torch.manual_seed(0)
    cfg = OmegaConf.create({"name": "mlp", "hidden": [40, 30], "width": 1.0})
    return build_model(cfg, (1, 6, 6), 5)


def train_steps(model: nn.Module, pruner, steps: int, start: int = 0,
                shape: tuple[int, ...] = (1, 6, 6), classes: int = 5, lr: float = 0.5) -> None:
    """SGD steps on seeded random batches, calling the pruner as the train loop does."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(start, start + steps):
        pruner.before_step(step)
        x = torch.randn(16, *shape, generator=gen)
        y = torch.randint(classes, (16,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def pruner_for(make_cfg, model, *overrides, steps_per_epoch=10):
    return build_pruner(make_cfg(*overrides), model, steps_per_epoch)


def test_targets_skip_output_layer_and_follow_excludes(make_cfg):
    model = mlp()
    names = [n for n, _ in select_targets(model, make_cfg().method.targets)]
    assert names == ["fc1", "fc2"]
    cfg = make_cfg("method.targets.exclude=[fc1]", "method.targets.keep_output_layer=false")
    assert [n for n, _ in select_targets(model, cfg.method.targets)] == ["fc2", "classifier"]


@pytest.mark.parametrize("method", ["magnitude", "random"])
@pytest.mark.parametrize("budget", ["uniform", "global"])
def test_hard_masks_keep_exactly_k(make_cfg, method, budget):
    model = mlp()
    pruner = pruner_for(make_cfg, model, f"method={method}", f"method.budget={budget}",
                        "sparsity=0.7", "trainer.epochs=2", "schedule.epoch=0")
    train_steps(model, pruner, 5)
    total = sum(layer.original.numel() for layer in pruner.structure.layers)
    zeros = sum(int((~layer.mask.mask).sum()) for layer in pruner.structure.layers)
    assert zeros == round(0.7 * total) if budget == "global" else zeros == sum(
        round(0.7 * layer.original.numel()) for layer in pruner.structure.layers)
    if budget == "uniform":
        for layer in pruner.structure.layers:
            assert int((~layer.mask.mask).sum()) == round(0.7 * layer.original.numel())
    # the forward really sees zeros where the mask is off
    for layer in pruner.structure.layers:
        assert torch.all(layer.module.weight[~layer.mask.mask] == 0)


def test_gmp_pruned_weights_never_come_back(make_cfg):
    model = mlp()
    pruner = pruner_for(make_cfg, model, "method=gmp", "sparsity=0.8", "trainer.epochs=10",
                        "schedule.start_epoch=0", "schedule.end_epoch=5", "schedule.dt=5",
                        steps_per_epoch=10)
    previous = None
    for start in range(0, 60, 5):
        train_steps(model, pruner, 5, start)
        masks = [layer.mask.mask.clone() for layer in pruner.structure.layers]
        if previous is not None:
            for before, now in zip(previous, masks, strict=True):
                assert not torch.any(now & ~before), "a pruned weight was revived"
        previous = masks
    assert pruner.sparsity == 0.8


def test_pdp_budgets_are_set_once_from_the_global_cut(make_cfg):
    model = mlp()
    pruner = pruner_for(make_cfg, model, "method=pdp", "sparsity=0.6", "trainer.epochs=6",
                        "schedule.warmup_epochs=1", "schedule.ramp_epochs=2", steps_per_epoch=3)
    weights = [layer.original.detach().abs().flatten() for layer in pruner.structure.layers]
    cut = torch.cat(weights).sort().values[round(0.6 * sum(w.numel() for w in weights)) - 1]
    expected = [int((w <= cut).sum()) for w in weights]  # no ties in random weights
    pruner.before_step(3)  # first step after the warm-up epoch: half the budget
    assert pruner.budget.fixed == expected
    assert pruner.counts == [round(b / 2) for b in expected]
    train_steps(model, pruner, 6, start=3)  # weights move; budgets must not
    assert pruner.budget.fixed == expected
    assert pruner.counts == expected


@pytest.mark.parametrize("method", ["pdp", "gmp", "magnitude", "random"])
def test_finalize_bakes_exact_sparsity(make_cfg, method):
    model = mlp()
    pruner = pruner_for(make_cfg, model, f"method={method}", "sparsity=0.75", "trainer.epochs=3",
                        steps_per_epoch=4)
    train_steps(model, pruner, 12)
    layers = pruner.structure.layers
    masked_out = {layer.name: layer.module.weight.detach().clone() for layer in layers}
    results = pruner.finalize()
    total = sum(r.params for r in results)
    pruned = sum(r.pruned for r in results)
    assert pruned == sum(r.expected_pruned for r in results)
    assert abs(pruned - round(0.75 * total)) <= len(results)  # per-layer rounding at most
    for r, (name, module) in zip(results, [(layer.name, layer.module) for layer in layers],
                                 strict=True):
        assert not hasattr(module, "parametrizations")  # plain weights again
        assert int((module.weight == 0).sum()) == r.pruned
        if method != "pdp":  # hard masks: the baked weights are exactly what the forward used
            assert torch.equal(module.weight, masked_out[name])


def test_pruner_state_roundtrip_restores_pdp_counts(make_cfg):
    model = mlp()
    pruner = pruner_for(make_cfg, model, "method=pdp", "trainer.epochs=4", steps_per_epoch=2)
    train_steps(model, pruner, 5)
    other_model = mlp()
    other = pruner_for(make_cfg, other_model, "method=pdp", "trainer.epochs=4", steps_per_epoch=2)
    other_model.load_state_dict(model.state_dict())
    other.load_state_dict(pruner.state_dict())
    x = torch.randn(3, 1, 6, 6)
    assert torch.equal(model(x), other_model(x))
    assert [layer.mask.pruned for layer in other.structure.layers] == pruner.counts


def test_depthwise_convs_are_skipped_by_default(make_cfg):
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1),
                          nn.Flatten(), nn.Linear(4, 2))
    names = [n for n, _ in select_targets(model, make_cfg().method.targets)]
    assert names == ["0", "2"]
    cfg = make_cfg("method.targets.skip_depthwise=false")
    assert [n for n, _ in select_targets(model, cfg.method.targets)] == ["0", "1", "2"]
