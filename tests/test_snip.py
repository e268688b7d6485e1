"""SNIP: |g w| of the initial weights, one global cut before step 0, masks fixed after."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pdprune
from pdprune.errors import ConfigError
from pdprune.run import run

from .conftest import TINY
from .test_resume import check_resume

ALL_LAYERS = {"method.targets.keep_output_layer": False}  # both layers of the tiny nets


def linear_net(seed: int = 0) -> nn.Sequential:
    """Two bias-free linear layers, no non-linearity: the gradient has a closed form."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        for layer in net:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
    return net


def one_batch(seed: int = 1, size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(size, 3, generator=gen), torch.randint(2, (size,), generator=gen)


def gradients_by_hand(net: nn.Sequential, x: torch.Tensor,
                      y: torch.Tensor) -> list[torch.Tensor]:
    """dL/dW from the closed form: logits = x W1^T W2^T, dL/dlogits = (softmax - onehot) / B,
    dL/dW2 = dlogits^T (x W1^T), dL/dW1 = (dlogits W2)^T x."""
    w1, w2 = net[0].weight.detach(), net[1].weight.detach()
    hidden = x @ w1.T
    dlogits = (torch.softmax(hidden @ w2.T, dim=1) - F.one_hot(y, 2).float()) / len(y)
    return [(dlogits @ w2).T @ x, dlogits.T @ hidden]


def saliency(net: nn.Sequential, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    return [(g * layer.weight.detach()).abs() for g, layer in zip(grads, net, strict=True)]


def saliency_by_hand(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return saliency(net, gradients_by_hand(net, x, y))


def snip(net: nn.Module, batches: list, sparsity: float, **settings) -> pdprune.Pruning:
    return pdprune.Pruning(net, method="snip", sparsity=sparsity, steps_per_epoch=4, epochs=2,
                           train_batches=lambda: iter(batches), settings={**ALL_LAYERS,
                                                                          **settings})


def masks(net: nn.Module) -> list[torch.Tensor]:
    return [layer.parametrizations.weight[0].mask.clone() for layer in net]


def test_saliency_and_the_global_cut_by_hand():
    net, (x, y) = linear_net(), one_batch()
    scores = saliency_by_hand(net, x, y)
    flat = torch.cat([s.flatten() for s in scores])  # 12 + 8 weights, no ties
    assert len(set(flat.tolist())) == flat.numel()
    kept = flat >= flat.sort(descending=True).values[20 - 10 - 1]  # 10 of 20 stay
    # not what magnitude would keep: the test tells saliency from |w|
    magnitudes = torch.cat([layer.weight.detach().abs().flatten() for layer in net])
    assert not torch.equal(kept, magnitudes >= magnitudes.sort(descending=True).values[9])

    snip(net, [(x, y)], 0.5)
    got = torch.cat([m.flatten() for m in masks(net)])
    assert torch.equal(got, kept)  # to the element, one cut over both layers at once


def test_several_batches_score_the_gradient_of_their_mean_loss():
    net, batches = linear_net(), [one_batch(1), one_batch(2)]
    mean = [(a + b) / 2 for a, b in zip(gradients_by_hand(net, *batches[0]),
                                          gradients_by_hand(net, *batches[1]), strict=True)]
    by_hand = saliency(net, mean)  # |g w| with g of the mean loss, not the mean of |g_b w|
    flat = torch.cat([s.flatten() for s in by_hand])
    kept = flat >= flat.sort(descending=True).values[5]  # 6 of 20 stay at sparsity 0.7
    snip(net, [*batches, one_batch(3)], 0.7, **{"method.batches": 2})  # the third is unread
    assert torch.equal(torch.cat([m.flatten() for m in masks(net)]), kept)


def test_nm_keeps_the_most_sensitive_n_of_every_m():
    net, (x, y) = linear_net(), one_batch()
    scores = saliency_by_hand(net, x, y)[1]  # layer "1", (2, 4): one group of 4 per row
    pdprune.Pruning(net, method="snip", sparsity=0.5, granularity="nm", steps_per_epoch=4,
                    epochs=2, train_batches=lambda: iter([(x, y)]),
                    settings={**ALL_LAYERS, "method.targets.include": ["^1$"]})
    expected = scores >= scores.sort(dim=1, descending=True).values[:, 1:2]  # 2 of 4 per row
    assert torch.equal(net[1].parametrizations.weight[0].mask, expected)


def test_masks_stay_fixed_and_the_count_is_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3))
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 8, generator=gen), torch.randint(3, (8,), generator=gen))
            for _ in range(4)]
    pruning = pdprune.Pruning(net, method="snip", sparsity=0.8, steps_per_epoch=4, epochs=2,
                              train_batches=lambda: iter(data))
    before = [net[i].parametrizations.weight[0].mask.clone() for i in (0, 2)]
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        for x, y in data:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            pruning.step()
        pruning.end_epoch()
    after = [net[i].parametrizations.weight[0].mask for i in (0, 2)]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    summary = pruning.finalize()
    zeros = sum(int((net[i].weight == 0).sum()) for i in (0, 2))
    assert zeros == summary["pruned_weights"] == round(0.8 * (8 * 16 + 16 * 16))
    assert summary["target_sparsity"] == 0.8
    assert all(torch.equal(net[i].weight == 0, ~m) for i, m in zip((0, 2), before, strict=True))


def test_scoring_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                        nn.Linear(8, 2))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(6, 4), torch.randint(2, (6,))
    pdprune.Pruning(net, method="snip", sparsity=0.5, steps_per_epoch=1, epochs=1,
                    train_batches=lambda: iter([(x, y)]))
    after = net.state_dict()  # a masked layer's weight is now its parametrization's original
    for key, value in state.items():  # BN running statistics included
        saved = after.get(key, after.get(key.replace("weight", "parametrizations.weight.original")))
        assert torch.equal(saved, value), key
    assert all(p.grad is None for p in net.parameters())


def test_needs_training_data():
    with pytest.raises(ConfigError, match="train_batches"):
        pdprune.Pruning(linear_net(), method="snip", sparsity=0.5, steps_per_epoch=1, epochs=1,
                        settings=ALL_LAYERS)


@pytest.mark.parametrize("settings,key", [
    ({"method.batches": 0}, "method.batches"),
    ({"schedule.epoch": 1}, "schedule.epoch"),
    ({"method.budget": "erk"}, "method.budget"),
])
def test_bad_values_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        pdprune.compose_config("snip", epochs=3, settings=settings)


def test_refuses_channels_and_other_schedules():
    with pytest.raises(ConfigError, match="granularity=channel"):
        pdprune.compose_config("snip", granularity="channel")
    with pytest.raises(ConfigError, match="schedule=cubic"):
        pdprune.compose_config("snip", schedule="cubic")


def two_layers() -> list[str]:
    return [*(o for o in TINY if not o.startswith("model.hidden")), "model.hidden=[32,16]"]


def test_resume_is_bit_equal(make_cfg, tmp_path, monkeypatch):
    check_resume(make_cfg, tmp_path, monkeypatch, [*two_layers(), "method=snip"])


@pytest.mark.slow
def test_smoke_ends_at_the_target(make_cfg, tmp_path):
    summary = run(make_cfg("experiment=smoke", "method=snip", "trainer.progress=false"),
                  tmp_path)
    check, prunable = summary["sparsity_check"], summary["prunable_params"]
    assert check["exact"] and check["pruned"] == round(0.9 * prunable)
    assert summary["achieved_sparsity"] == check["pruned"] / prunable
