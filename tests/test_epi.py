"""EPI (docs/methods.md#epi): sub-network similarity, EPI_t and the trigger, by hand; and a run
that logs EPI every epoch, prunes once at the trigger and reports it."""

from __future__ import annotations

import json

import pytest
import torch

from pdprune.errors import ConfigError
from pdprune.pruning.epi import EarlyPruningIndicator, distance, similarity
from pdprune.pruning.importance import ImportanceMeter
from pdprune.run import run

# Kept channels per layer after epochs 1..5 (two layers), converging to (6, 10).
HISTORY = [[8, 8], [4, 12], [6, 10], [6, 10], [6, 10]]
# By hand, window r = 2:
#   EPI_2 = Psi(N2, N1) = 1 - (4/12 + 4/20) / 2                            = 0.733333
#   EPI_3 = (Psi(N3, N2) + Psi(N3, N1)) / 2
#         = ((1 - (2/10 + 2/22) / 2) + (1 - (2/14 + 2/18) / 2)) / 2        = 0.863781
#   EPI_4 = (Psi(N4, N3) + Psi(N4, N2)) / 2 = (1 + 0.854545) / 2           = 0.927273
#   EPI_5 = (1 + 1) / 2                                                    = 1.0
EXPECTED = [None, 0.733333, 0.863781, 0.927273, 1.0]


def test_distance_and_similarity_by_hand():
    assert distance(3, 5) == pytest.approx(0.25)
    assert distance(0, 0) == 0.0
    assert similarity([3, 4], [5, 4]) == pytest.approx(1 - 0.25 / 2)
    with pytest.raises(ValueError):
        similarity([1, 2], [1])


def observe_all(tau: float, window: int = 2, patience: int = 2) -> tuple[list, int | None]:
    indicator = EarlyPruningIndicator(tau=tau, window=window, patience=patience)
    fired = None
    for epoch, subnet in enumerate(HISTORY, start=1):
        indicator.observe(subnet)
        if fired is None and indicator.fires():
            fired = epoch
    return indicator.values, fired


def test_epi_values_on_a_hand_made_history():
    values, _ = observe_all(tau=0.95)
    assert values[0] is None
    assert values[1:] == pytest.approx(EXPECTED[1:], abs=1e-6)


@pytest.mark.parametrize(("tau", "epoch"), [(0.95, 5), (0.9, 4), (0.7, 3), (1.0, None)])
def test_trigger_epoch_on_a_hand_made_history(tau, epoch):
    # fires at the first epoch whose EPI exceeds tau and the previous (up to 2) EPI values;
    # never at epoch 2, which has no earlier EPI to beat
    assert observe_all(tau)[1] == epoch


def test_a_high_epi_below_an_earlier_one_does_not_fire():
    indicator = EarlyPruningIndicator(tau=0.5, window=1, patience=2)
    for subnet in ([8, 8], [8, 8], [7, 9]):  # EPI: -, 1.0, 0.9375
        indicator.observe(subnet)
    assert indicator.values[1:] == pytest.approx([1.0, 1 - (1 / 15 + 1 / 17) / 2])
    assert not indicator.fires()


def test_bn_taylor_is_gamma_grad_gamma_plus_beta_grad_beta_averaged_over_batches():
    bn = torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.5, 3.0]))
    meter = ImportanceMeter({"bn": bn}, "bn_taylor")
    grads = [(torch.tensor([1.0, 2.0]), torch.tensor([4.0, -1.0])),
             (torch.tensor([-3.0, 0.0]), torch.tensor([2.0, 1.0]))]
    for g_gamma, g_beta in grads:
        bn.weight.grad, bn.bias.grad = g_gamma, g_beta
        meter.update()
    # |2*1 + 0.5*4| = 4, |-1*2 + 3*-1| = 5 ; |2*-3 + 0.5*2| = 5, |0 + 3*1| = 3
    assert meter.scores()["bn"].tolist() == pytest.approx([(4 + 5) / 2, (5 + 3) / 2])


EPI_RUN = ("dataset=synthetic", "model=resnet20", "granularity=channel", "schedule=epi",
           "sparsity=0.5", "trainer.epochs=6", "trainer.progress=false",
           "granularity.round_to=1", "method=magnitude")  # binary masks: compacted at once


PRUNE_LOG = {"indicator": "indicator", "fallback": "fallback (max_epoch)"}


def trigger_by_the_rule(epi_values: list, tau: float, patience: int, max_epoch: int):
    """(epoch, kind) of the trigger that the EPI rule gives on a run's own logged values."""
    for epoch, value in enumerate(epi_values, start=1):
        previous = [v for v in epi_values[:epoch - 1] if v is not None][-patience:]
        if value is not None and previous and value > tau and all(value > v for v in previous):
            return epoch, "indicator"
        if epoch >= max_epoch:
            return epoch, "fallback"
    return None, None


@pytest.mark.parametrize("tau", [0.95, 0.9, 0.7, 1.0])
def test_the_rule_read_from_logged_values_is_the_indicators(tau):
    values, fired = observe_all(tau)
    assert trigger_by_the_rule(values, tau, patience=2, max_epoch=len(values) + 1) == \
        ((fired, "indicator") if fired else (None, None))
    # the AMD EPYC trajectory: EPI_3 0.904 < EPI_2 0.913, so epoch 4 fires, not 3
    assert trigger_by_the_rule([None, 0.913, 0.904, 0.95], 0.5, 5, 5) == (4, "indicator")


def test_epi_run_logs_every_epoch_and_prunes_once_at_the_trigger(make_cfg, tmp_path):
    # Which epoch fires depends on the CPU's float trajectory (3 here, 4 on an AMD EPYC), so the
    # trigger t is read from the run's own logged EPI values; every assertion holds at any t.
    summary = run(make_cfg(*EPI_RUN, "schedule.tau=0.5", "schedule.max_epoch=5",
                           "schedule.cut=channels"), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    watched = [r for r in records if "epi" in r]  # the epochs before pruning
    t, kind = trigger_by_the_rule([r["epi"] for r in watched], tau=0.5, patience=5, max_epoch=5)
    assert t is not None and 3 <= t <= 5  # epoch 3 is the first that can fire, 5 the last
    after = 6 - t
    assert [("epi" in r) for r in records] == [True] * t + [False] * after
    assert records[0]["epi"] is None
    assert [r.get("epi_prune") for r in records] == [None] * (t - 1) + [PRUNE_LOG[kind]] \
        + [None] * after  # pruned once
    pruned = summary["channels"]["expected_pruned"] / summary["channels"]["total"]
    assert pruned == pytest.approx(0.5, abs=4 / 448)  # every group keeps at least one channel
    assert [r["target_sparsity"] for r in records] == [0] * t + [pruned] * after
    epi = summary["epi"]
    assert (epi["trigger_epoch"], epi["trigger"]) == (t, kind)
    assert epi["values"] == [r["epi"] for r in watched]
    assert summary["channels"]["pruned"] == summary["channels"]["expected_pruned"]
    cost = summary["training_cost"]
    macs = cost["forward_macs_per_epoch"]
    assert macs[:t] == [summary["flops_dense"]] * t and len(set(macs[t:])) == 1
    assert macs[t] < macs[0]
    assert cost["vs_dense"] == pytest.approx((t + after * macs[t] / macs[0]) / 6)


def test_epi_falls_back_to_max_epoch_at_the_cost_of_a_uniform_cut(make_cfg, tmp_path):
    summary = run(make_cfg(*EPI_RUN, "schedule.tau=0.9999", "schedule.max_epoch=2"),
                  tmp_path / "epi")
    assert (summary["epi"]["trigger_epoch"], summary["epi"]["trigger"]) == (2, "fallback")
    assert summary["epi"]["cut"] == "macs"
    # schedule.cut=macs (the default): the kept network costs what pruning half of every
    # group's channels costs, up to the last channel of the ranking (a few percent)
    uniform = run(make_cfg(*EPI_RUN[:3], *EPI_RUN[4:], "schedule=oneshot", "schedule.epoch=2",
                           "method=magnitude", "method.budget=uniform"), tmp_path / "uniform")
    kept = summary["training_cost"]["forward_macs_per_epoch"][-1]
    budget = uniform["training_cost"]["forward_macs_per_epoch"][-1]
    assert 0.95 * budget < kept <= budget


def test_epi_needs_channels(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="granularity=channel"):
        run(make_cfg("dataset=synthetic", "schedule=epi", "trainer.epochs=4"), tmp_path)
