"""STR: w_eff = sign(w) relu(|w| - sigmoid(s)), one learned s per layer, frozen at the target."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

import pdprune
from pdprune.errors import ConfigError, PdpruneError
from pdprune.pruning.soft_threshold import SoftThresholdMask
from pdprune.run import run
from pdprune.train.optim import build_optimizer

from .conftest import TINY
from .test_resume import check_resume

STEPS = 24
FAST = {"method.s_init": -4.0}  # with its own decay below: the thresholds rise within STEPS


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_forward_and_gradients_by_hand():
    mask = SoftThresholdMask(torch.zeros(3), s_init=-2.0, weight_decay=None)
    w = torch.tensor([0.5, -0.3, 0.02], requires_grad=True)
    t = sigmoid(-2.0)  # 0.1192: prunes the third weight only
    out = mask(w)
    assert torch.allclose(out, torch.tensor([0.5 - t, -(0.3 - t), 0.0]))
    (torch.tensor([1.0, 2.0, 3.0]) * out).sum().backward()
    assert torch.equal(w.grad, torch.tensor([1.0, 2.0, 0.0]))  # 1[|w| > t]
    # dL/ds = -t (1 - t) (1 * sign(0.5) + 2 * sign(-0.3)) = t (1 - t)
    assert mask.s.grad.item() == pytest.approx(t * (1 - t), rel=1e-6)
    assert torch.equal(mask.hard(w.detach()), torch.tensor([True, True, False]))
    assert torch.equal(mask.baked(w.detach()), out.detach())


def test_a_weight_on_the_threshold_is_pruned():
    mask = SoftThresholdMask(torch.zeros(3), s_init=0.0, weight_decay=None)  # threshold 0.5
    w = torch.tensor([0.5, -0.1, 0.02], requires_grad=True)
    out = mask(w)
    assert torch.equal(out, torch.zeros(3))
    out.sum().backward()
    assert mask.s.grad.item() == 0.0 and torch.equal(w.grad, torch.zeros(3))
    assert not mask.hard(w.detach()).any()


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 16, generator=gen), torch.randint(4, (16,), generator=gen))
            for _ in range(4)]


def train_str(sparsity: float, after_backward: bool = True, decay: float = 0.1, **settings):
    """STEPS steps of SGD with momentum and weight decay (the thresholds' own `decay`, larger:
    they rise within STEPS); per step, before it: (sparsity of w_eff counted here, every s)."""
    net = mlp()
    pruning = pdprune.Pruning(net, method="str", sparsity=sparsity, steps_per_epoch=4,
                              epochs=STEPS // 4, settings={**FAST, **settings})
    thresholds = [mask.s for mask in pruning.core.structure.masks]
    others = [p for p in net.parameters() if all(p is not s for s in thresholds)]
    opt = torch.optim.SGD([{"params": others}, {"params": thresholds, "weight_decay": decay}],
                          lr=0.1, momentum=0.9, weight_decay=5e-4)
    history, data = [], batches()
    for step in range(STEPS):
        weights = [net[i].weight.detach() for i in (0, 2)]  # w_eff, as the forward sees it
        zeros = sum(int((w == 0).sum()) for w in weights)
        history.append((zeros / sum(w.numel() for w in weights), [s.item() for s in thresholds]))
        x, y = data[step % len(data)]
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        if after_backward:
            pruning.after_backward()
        opt.step()
        pruning.step()
        if (step + 1) % 4 == 0:
            pruning.end_epoch()
    return net, pruning, history


def test_freezes_at_the_first_step_at_the_target_and_s_stays():
    net, pruning, history = train_str(0.5)
    first = next(k for k, (achieved, _) in enumerate(history) if achieved >= 0.5)
    assert 0 < first < STEPS - 4  # the thresholds moved first, and froze with steps to go
    rule = pruning.core.rules[0]
    assert rule.frozen_at == first
    assert history[first][1] != history[0][1]  # s trained until then
    frozen = history[first][1]
    assert all(s == frozen for _, s in history[first:])  # momentum and decay did not move it
    assert [m.s.item() for m in pruning.core.structure.masks] == frozen


def test_baked_weights_are_the_forward_weights():
    net, pruning, _ = train_str(0.5)
    w_eff = [net[i].weight.detach().clone() for i in (0, 2)]  # parametrized: sign relu(...)
    summary = pruning.finalize()
    assert not any(hasattr(m, "parametrizations") for m in net.modules())
    for i, expected in zip((0, 2), w_eff, strict=True):
        assert torch.equal(net[i].weight, expected)  # shrunk, not w * mask
    zeros = sum(int((w == 0).sum()) for w in w_eff)
    total = sum(w.numel() for w in w_eff)
    assert summary["pruned_weights"] == zeros
    assert summary["achieved_sparsity"] == zeros / total >= 0.5
    assert summary["target_sparsity"] == 0.5
    assert summary["str"]["frozen_at_step"] == pruning.core.rules[0].frozen_at
    assert [r["expected_pruned"] for r in summary["layers"]] == \
        [int((w == 0).sum()) for w in w_eff]


def test_finalize_refuses_thresholds_that_moved_after_freezing():
    _, pruning, _ = train_str(0.5, after_backward=False)
    with pytest.raises(PdpruneError, match="after_backward"):
        pruning.finalize()


def test_a_target_never_reached_ends_below_it_unfrozen():
    _, pruning, history = train_str(0.5, decay=0.0)  # only the loss moves the thresholds
    assert max(achieved for achieved, _ in history) < 0.5
    summary = pruning.finalize()
    assert summary["str"]["frozen_at_step"] is None and summary["achieved_sparsity"] < 0.5


def test_without_freezing_s_trains_to_the_end():
    _, pruning, history = train_str(0.5, **{"method.freeze_at_target": False})
    assert max(achieved for achieved, _ in history) >= 0.5
    assert pruning.core.rules[0].frozen_at is None
    assert history[-1][1] != [m.s.item() for m in pruning.core.structure.masks]


def test_thresholds_take_their_own_weight_decay_in_the_optimizer():
    net = mlp()
    pruning = pdprune.Pruning(net, method="str", sparsity=0.5, steps_per_epoch=1, epochs=1,
                              settings={"method.s_weight_decay": 0.25})
    optim = OmegaConf.create({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                              "weight_decay": 5e-4})
    groups = build_optimizer(optim, net).param_groups
    thresholds = {id(m.s) for m in pruning.core.structure.masks}
    own = [g for g in groups if any(id(p) in thresholds for p in g["params"])]
    assert len(own) == 1 and own[0]["weight_decay"] == 0.25
    assert {id(p) for p in own[0]["params"]} == thresholds
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


@pytest.mark.parametrize("settings,key", [
    ({"method.s_weight_decay": -1.0}, "method.s_weight_decay"),
    ({"schedule.epoch": 1}, "schedule.epoch"),
    ({"method.s_init": "nan"}, "method.s_init"),
])
def test_bad_values_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        pdprune.compose_config("str", epochs=3, settings=settings)


def test_needs_unstructured_weights():
    with pytest.raises(ConfigError, match="granularity"):
        pdprune.compose_config("str", granularity="nm")


RESUME = ["method=str", "sparsity=0.5", "method.s_init=-4", "method.s_weight_decay=0.2",
          "trainer.epochs=5"]


def test_resume_is_bit_equal(make_cfg, tmp_path, monkeypatch):
    tiny = [o for o in TINY if not o.startswith(("model.hidden", "trainer.epochs"))]
    check_resume(make_cfg, tmp_path, monkeypatch, [*tiny, "model.hidden=[32,32]", *RESUME])
    whole, killed = (json.loads((tmp_path / d / "summary.json").read_text())["str"]
                     for d in ("whole", "killed"))
    assert killed == whole and 0 < whole["frozen_at_step"] < 16  # froze before the kill


# The smoke's 76 steps are too few for the optimizer's weight decay (5e-4) to raise the
# thresholds (it ends at 0.13): configs/experiment_method/smoke_str.yaml gives s its own decay.
SMOKE = ("experiment=smoke", "method=str")


@pytest.mark.slow
def test_smoke_ends_frozen_at_the_target(make_cfg, tmp_path):
    summary = run(make_cfg(*SMOKE, "trainer.progress=false"), tmp_path)
    assert summary["str"]["frozen_at_step"] is not None
    assert summary["achieved_sparsity"] >= 0.9
    assert summary["sparsity_check"]["exact"]


def test_the_smoke_recipe_sets_str_decay_only_for_str(make_cfg):
    assert make_cfg(*SMOKE).method.s_weight_decay == 0.11
    assert make_cfg("method=str").method.s_weight_decay is None  # the paper's: the optimizer's
    assert make_cfg(*SMOKE, "method.s_weight_decay=0.3").method.s_weight_decay == 0.3
