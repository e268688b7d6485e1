"""Movement pruning (method=movement): the straight-through estimator, the score update, hard
movement's per-layer Top_v, soft movement's global tau and L1 penalty, resume, CLI and API."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pdprune
from pdprune.errors import ConfigError
from pdprune.pruning.movement import FlooredGlobal, MovementMask, ScorePenalty, cut_counts, keep_top
from pdprune.pruning.selection import global_budget
from pdprune.run import run
from pdprune.train.optim import build_optimizer, param_groups

from .conftest import TINY
from .test_resume import check_resume

W = [[1.0, -2.0, 3.0], [0.5, -1.0, 2.0]]
S = [[0.3, -0.1, 0.2], [0.0, 0.5, -0.4]]
G = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]  # dL/dW' of the loss sum(W' * G)
# pruning 2: the two smallest scores (-0.4 at [1, 2], -0.1 at [0, 1]) go
M = [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def hand_mask() -> tuple[nn.Parameter, MovementMask]:
    weight = nn.Parameter(torch.tensor(W))
    mask = MovementMask(weight, 0.0, None)
    with torch.no_grad():
        mask.scores.copy_(torch.tensor(S))
    mask.set(2)
    return weight, mask


def test_straight_through_gradients_by_hand():
    weight, mask = hand_mask()
    out = mask(weight)
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 3.0], [0.5, -1.0, 0.0]]))
    (out * torch.tensor(G)).sum().backward()
    assert torch.equal(weight.grad, torch.tensor([[1.0, 0.0, 3.0], [4.0, 5.0, 0.0]]))  # G * M
    assert torch.equal(mask.scores.grad, torch.tensor([[1.0, -4.0, 9.0], [2.0, -5.0, 12.0]]))


def test_score_update_after_one_sgd_step_by_hand():
    weight, mask = hand_mask()
    opt = torch.optim.SGD([mask.scores], lr=0.1)
    (mask(weight) * torch.tensor(G)).sum().backward()
    opt.step()
    # S - 0.1 * G * W
    expected = torch.tensor([[0.2, 0.3, -0.7], [-0.2, 1.0, -1.6]])
    assert torch.allclose(mask.scores.detach(), expected, atol=1e-7)
    # a pruned weight's score moves too (it can come back); the pruned weight itself does not
    assert mask.scores[1, 2] != -0.4 and weight.grad[1, 2] == 0


def test_scores_train_in_the_model_with_their_own_lr_and_no_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    pruning = pdprune.Pruning(model, method="movement", sparsity=0.6, steps_per_epoch=2,
                              epochs=3, settings={"method.targets.keep_output_layer": False,
                                                  "method.score_lr": 0.5})
    opt = build_optimizer(pruning.config.optim, model)  # built after the masks attached
    plain, scores = opt.param_groups
    assert scores["lr"] == 0.5 and scores["weight_decay"] == 0.0
    assert plain["weight_decay"] == pruning.config.optim.weight_decay
    assert len(scores["params"]) == 2
    assert not {id(p) for p in scores["params"]} & {id(p) for p in plain["params"]}

    # one SGD step (no momentum) on the groups: S' = S - score_lr * dL/dW' * W, the gradient
    # dL/dW' taken independently, on a copy with W' as a plain leaf
    layer = model[0].parametrizations.weight
    w, s = layer.original.detach().clone(), layer[0].scores.detach().clone()
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    w_masked = (w * layer[0].keep()).requires_grad_()
    h = F.linear(x, w_masked, model[0].bias.detach())
    out = F.linear(torch.relu(h), model[2].weight.detach(), model[2].bias.detach())
    F.cross_entropy(out, y).backward()
    sgd = torch.optim.SGD(param_groups(model), lr=0.1)
    sgd.param_groups[1]["lr"] = 0.5
    F.cross_entropy(model(x), y).backward()
    sgd.step()
    assert torch.allclose(layer[0].scores.detach(), s - 0.5 * w_masked.grad * w, atol=1e-7)


def test_ties_go_by_position_and_exactly_the_count():
    assert keep_top(torch.zeros(5), 2).tolist() == [False, False, True, True, True]
    scores = torch.tensor([0.1, 0.0, 0.1, -0.2, 0.1, 0.3])
    assert keep_top(scores, 3).tolist() == [False, False, True, False, True, True]
    assert keep_top(scores, 0).all() and not keep_top(scores, 6).any()


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 24),
                         nn.ReLU(), nn.Linear(24, 4))


def train(model, pruning, steps: int, check=None) -> None:
    """The documented loop, with after_backward (soft movement adds its penalty there)."""
    opt = torch.optim.Adam(param_groups(model), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        x, y = torch.randn(8, 1, 6, 6, generator=gen), torch.randint(4, (8,), generator=gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruning.after_backward()
        opt.step()
        pruning.step()
        if check is not None:
            check(pruning)
        if (step + 1) % 4 == 0:
            pruning.end_epoch()


def masks(pruning):
    return [(layer.mask, layer.original) for layer in pruning.core.structure.layers]


def test_hard_movement_keeps_exactly_top_v_in_each_layer():
    model = cnn()
    pruning = pdprune.Pruning(model, method="movement", sparsity=0.8, steps_per_epoch=4,
                              epochs=4, settings={"schedule.dt": 1})

    def top_v_per_layer(p):
        for (mask, weight), count in zip(masks(p), p.core.counts, strict=True):
            assert count == round(p.core.sparsity * weight.numel())  # uniform
            keep = mask.hard(weight)
            assert int((~keep).sum()) == count
            if 0 < count:  # the kept are the largest scores
                assert mask.scores[keep].min() >= mask.scores[~keep].max()

    train(model, pruning, 16, top_v_per_layer)
    summary = pruning.finalize()
    for layer in summary["layers"]:
        assert layer["pruned"] == layer["expected_pruned"] == round(0.8 * layer["params"])
    modules = dict(model.named_modules())
    assert all(int((modules[n].weight == 0).sum()) == round(0.8 * modules[n].weight.numel())
               for n in pruning.layers)
    assert not any(hasattr(m, "parametrizations") for m in model.modules())


def test_soft_movement_global_tau_keeps_exactly_the_target_fraction():
    model = cnn()
    pruning = pdprune.Pruning(model, method="movement", sparsity=0.7, steps_per_epoch=4,
                              epochs=4, settings={"method.soft": True, "schedule.dt": 1})
    total = sum(w.numel() for _, w in masks(pruning))

    def one_global_tau(p):
        pairs = masks(p)
        kept = torch.cat([m.hard(w).reshape(-1) for m, w in pairs])
        scores = torch.cat([m.scores.detach().reshape(-1) for m, _ in pairs])
        assert int((~kept).sum()) == round(p.core.sparsity * total)
        if p.core.sparsity:  # S > tau: every kept score above every pruned one, over all layers
            assert scores[kept].min() >= scores[~kept].max()
            assert p.core.counts == global_budget([m.scores.detach() for m, _ in pairs],
                                                  p.core.sparsity)

    train(model, pruning, 16, one_global_tau)
    assert pruning.core.sparsity == 0.7
    summary = pruning.finalize()
    assert summary["pruned_weights"] == round(0.7 * total)
    assert summary["achieved_sparsity"] == round(0.7 * total) / total


def test_global_cut_keeps_each_layers_floor_and_the_exact_total():
    sizes = [100, 400, 500]
    structure = type("S", (), {"sizes": lambda self: sizes})()
    budget = FlooredGlobal(structure, 0.05)  # floors: int(0.05 n) + 1 = 6, 21, 26
    gen = torch.Generator().manual_seed(0)
    scores = [torch.randn(1, n, generator=gen) for n in sizes]
    scores[0] -= 100.0  # layer 0 has not moved: one tau would prune it whole
    counts = budget.counts(0.8, 0.8, lambda i: scores[i])
    assert counts[0] == 100 - 6 and sum(counts) == 800
    # the others share one tau: every kept score above every pruned one among them
    kept = torch.cat([keep_top(scores[i], counts[i]).reshape(-1) for i in (1, 2)])
    rest = torch.cat([scores[i].reshape(-1) for i in (1, 2)])
    assert rest[kept].min() >= rest[~kept].max()
    assert counts[1:] == cut_counts(scores[1:], 800 - 94)
    # no layer at its floor: the plain global cut
    spread = [torch.randn(1, n, generator=gen) for n in sizes]
    assert budget.counts(0.5, 0.5, lambda i: spread[i]) == global_budget(spread, 0.5)
    with pytest.raises(ConfigError, match="sparsity"):
        budget.check(0.96)


def test_soft_penalty_gradient_by_hand():
    model = cnn()
    pruning = pdprune.Pruning(model, method="movement", sparsity=0.7, steps_per_epoch=4,
                              epochs=4, settings={"method.soft": True, "method.l1": 8.0})
    (rule,) = [r for r in pruning.core.rules if isinstance(r, ScorePenalty)]
    pairs = masks(pruning)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # spread scores (a global cut of equal scores could empty a layer)
        for m, _ in pairs:
            m.scores.copy_(torch.randn(m.scores.shape, generator=gen))
        pairs[0][0].scores.fill_(2.0)
        pairs[1][0].scores.view(-1)[:5] = 0.0
    pruning.before_step(15)  # at the target: the ramped lambda is the full lambda
    assert pruning.core.sparsity == 0.7
    rule.after_backward(pruning.core, 15)
    sig = 1 / (1 + 2.718281828459045 ** -2.0)
    layers = len(pairs)
    first, second = pairs[0][0].scores, pairs[1][0].scores
    assert torch.allclose(first.grad, torch.full_like(first, 8.0 / (layers * first.numel())
                                                      * sig * (1 - sig)))
    # S = 0: sigmoid' = 1/4
    assert torch.allclose(second.grad.view(-1)[:5],
                          torch.full((5,), 8.0 / (layers * second.numel()) / 4))
    # while dense the ramped lambda is 0: no penalty
    pruning.before_step(0)
    for m, _ in pairs:
        m.scores.grad = None
    rule.after_backward(pruning.core, 0)
    assert all(m.scores.grad is None for m, _ in pairs)


@pytest.mark.parametrize("soft", [False, True])
def test_resume_is_bit_equal(make_cfg, tmp_path, monkeypatch, soft):
    # two pruned layers (the output layer stays dense), so soft's one tau spans layers
    tiny = [o for o in TINY if not o.startswith("model.hidden")]
    overrides = [*tiny, "model.hidden=[32,32]", "method=movement",
                 f"method.soft={str(soft).lower()}", "trainer.epochs=5", "schedule.dt=2"]
    check_resume(make_cfg, tmp_path, monkeypatch, overrides)


@pytest.mark.slow
@pytest.mark.parametrize("soft", [False, True])
def test_smoke_ends_at_the_target(make_cfg, tmp_path, soft):
    summary = run(make_cfg("experiment=smoke", "method=movement",
                           f"method.soft={str(soft).lower()}", "trainer.progress=false"),
                  tmp_path)
    check, prunable = summary["sparsity_check"], summary["prunable_params"]
    assert check["exact"] and check["ties"] == 0
    if soft:  # one global cut
        assert check["pruned"] == round(0.9 * prunable)
    else:  # Top_v in each layer
        assert check["pruned"] == sum(round(0.9 * r["params"]) for r in summary["layers"])
    assert summary["achieved_sparsity"] == check["pruned"] / prunable


@pytest.mark.parametrize("settings,key", [
    ({"method.score_lr": -1.0}, "method.score_lr"),
    ({"method.l1": -1.0}, "method.l1"),
    ({"method.min_kept": 1.0}, "method.min_kept"),
    ({"method.budget": "erk"}, "method.budget"),
])
def test_bad_values_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        pdprune.compose_config("movement", settings=settings)


def test_needs_unstructured_granularity():
    with pytest.raises(ConfigError, match="granularity"):
        pdprune.compose_config("movement", granularity="nm")
