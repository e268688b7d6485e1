"""Early-Bird tickets (docs/methods.md#early-bird): the mask distance and the trigger by hand;
the L1 subgradient on BN scales; the ticket drawn from |gamma| is exactly what gets pruned; a
run that logs the distance every epoch, prunes once and resumes bit-equal."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pdprune.api import Pruning
from pdprune.config.preflight import check
from pdprune.errors import PdpruneError
from pdprune.pruning.bn_l1 import BNScaleL1
from pdprune.pruning.early_bird import EarlyBirdQueue, mask_distance

from .test_resume import check_resume


def test_mask_distance_is_the_fraction_of_channels_that_differ():
    a = [torch.tensor([True, True, False, False]), torch.tensor([True, False])]
    b = [torch.tensor([True, False, True, False]), torch.tensor([False, False])]
    assert mask_distance(a, b) == pytest.approx(3 / 6)  # A1, A2 and B0 differ
    assert mask_distance(a, a) == 0.0
    with pytest.raises(ValueError):
        mask_distance(a, a[:1])


def kept(*channels: int) -> list[torch.Tensor]:
    """A mask over 20 channels in two groups (12 + 8), keeping `channels`."""
    keep = torch.zeros(20, dtype=torch.bool)
    keep[list(channels)] = True
    return [keep[:12], keep[12:]]


# Six masks keeping 10 of 20 channels; moving one channel flips two entries: H = 0.1.
MASKS = [kept(*range(10)),                       # m1
         kept(*range(8), 10, 11),                # m2: 8, 9 -> 10, 11
         kept(*range(7), 10, 11, 12),            # m3: 7 -> 12
         kept(*range(7), 10, 11, 12),            # m4 = m3
         kept(*range(6), 10, 11, 12, 13),        # m5: 6 -> 13
         kept(*range(6), 10, 11, 12, 13)]        # m6 = m5
# By hand: consecutive H(m_t, m_{t-1}) = -, 0.2, 0.1, 0, 0.1, 0
# newest, window 3: max(H(m_t, m_{t-1}), H(m_t, m_{t-2})):
#   t=2: 0.2 (one earlier mask); t=3: max(0.1, 0.3); t=4: max(0, 0.1); t=5: max(0.1, 0.1);
#   t=6: max(0, 0.1)
# newest, window 4, t=4..6: max(0, 0.1, 0.3), max(0.1, 0.1, 0.2), max(0, 0.1, 0.1)
DISTANCES = {("consecutive", 2): [None, 0.2, 0.1, 0.0, 0.1, 0.0],
             ("newest", 3): [None, 0.2, 0.3, 0.1, 0.1, 0.1],
             ("newest", 4): [None, 0.2, 0.3, 0.3, 0.2, 0.1]}


def observe_all(pairs: str, window: int, epsilon: float) -> tuple[list, int | None]:
    queue = EarlyBirdQueue(epsilon, window, pairs)
    fired = None
    for epoch, mask in enumerate(MASKS, start=1):
        queue.observe(mask)
        if fired is None and queue.fires():
            fired = epoch
    return queue.distances, fired


@pytest.mark.parametrize(("pairs", "window"), list(DISTANCES))
def test_distances_on_hand_made_masks(pairs, window):
    distances, _ = observe_all(pairs, window, 0.15)
    assert distances[0] is None
    assert distances[1:] == pytest.approx(DISTANCES[pairs, window][1:])


@pytest.mark.parametrize(("pairs", "window", "epsilon", "epoch"), [
    # the paper: the last `window` consecutive distances all < epsilon
    ("consecutive", 2, 0.15, 4),  # d3 = 0.1, d4 = 0; not at 3: d2 = 0.2
    ("consecutive", 3, 0.15, 5),  # d3, d4, d5; at 4 only two distances are below
    ("consecutive", 4, 0.25, 5),  # d2..d5: needs 4 distances, so 5 masks
    ("consecutive", 5, 0.15, None),  # d2 = 0.2 stays in every window of 5 within 6 epochs
    ("consecutive", 2, 0.1, None),  # strictly below: d = 0.1 never counts
    # the authors' code: newest vs the window - 1 earlier masks, once the queue is full
    ("newest", 3, 0.15, 4),  # not at 2 (queue not full) nor at 3 (0.3)
    ("newest", 4, 0.15, 6),
    ("newest", 3, 0.1, 4),  # at most epsilon: d = 0.1 fires
])
def test_trigger_on_hand_made_masks(pairs, window, epsilon, epoch):
    assert observe_all(pairs, window, epsilon)[1] == epoch


def test_bn_l1_adds_l1_times_the_sign_of_gamma_while_dense():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -0.5, 0.0]))
    before = torch.tensor([0.1, 0.2, -0.3])
    rule = BNScaleL1(nn.Sequential(bn), 1e-2)
    bn.weight.grad = before.clone()
    rule.after_backward(SimpleNamespace(sparsity=0.0), 0)
    assert torch.equal(bn.weight.grad, before + 1e-2 * torch.tensor([1.0, -1.0, 0.0]))
    assert bn.bias.grad is None  # the shift has no term
    bn.weight.grad = before.clone()
    rule.after_backward(SimpleNamespace(sparsity=0.5), 0)  # pruned: off by default
    assert torch.equal(bn.weight.grad, before)
    BNScaleL1(nn.Sequential(bn), 1e-2, when_pruned=True).after_backward(
        SimpleNamespace(sparsity=0.5), 0)
    assert torch.equal(bn.weight.grad, before + 1e-2 * torch.sign(bn.weight.detach()))


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


# |gamma| of 16 channels; the 8 smallest: 0.01 0.02 0.05 0.08 0.1 0.12 0.15 0.2
GAMMA_1 = [0.9, -0.1, 0.5, 0.05, -0.7, 0.3, 0.2, 0.01]
GAMMA_2 = [0.4, 0.02, -0.6, 0.15, 0.08, 0.35, -0.25, 0.12]
KEEP_1 = [True, False, True, False, True, True, False, False]
KEEP_2 = [True, False, True, False, False, True, True, False]


def test_the_ticket_pruned_is_the_global_gamma_cut_of_the_trigger_epoch():
    torch.manual_seed(0)
    model = TwoConvs()
    pruning = Pruning(model, "magnitude", 0.5, "channel", "early_bird", steps_per_epoch=2,
                      epochs=4, input_shape=(3, 8, 8),
                      settings={"granularity.round_to": 1, "schedule.window": 1,
                                "schedule.max_epoch": 3})
    gammas = [model.bn1.parametrizations.weight.original,
              model.bn2.parametrizations.weight.original]
    with torch.no_grad():
        for gamma, values in zip(gammas, (GAMMA_1, GAMMA_2), strict=True):
            gamma.copy_(torch.tensor(values))
    # dense: the L1 subgradient lands on the parameter the optimizer holds
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    before = [g.grad.clone() for g in gammas]
    pruning.after_backward()
    for gamma, grad in zip(gammas, before, strict=True):
        assert torch.equal(gamma.grad, grad + 1e-4 * torch.sign(gamma.detach()))

    # the mask does not move between epochs 1 and 2: H = 0 < 0.1 fires with window 1
    assert pruning.end_epoch() == {"eb_distance": None}
    assert pruning.end_epoch() == {"eb_distance": 0.0, "eb_prune": "distance"}
    schedule = pruning.core.schedule
    expected = {"conv1": KEEP_1, "conv2": KEEP_2}
    order = [expected[g.root] for g in pruning.core.structure.groups]
    assert [k.tolist() for k in schedule.ticket] == order
    assert pruning.core.target_sparsity == 0  # from the next step on
    pruning.before_step(2 * 2)
    assert [m.hard().tolist() for m in pruning.core.structure.masks] == order

    model.zero_grad()
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    before = [g.grad.clone() for g in gammas]
    pruning.after_backward()  # pruned: no L1 term (schedule.l1_when_pruned=false)
    assert all(torch.equal(g.grad, b) for g, b in zip(gammas, before, strict=True))

    summary = pruning.finalize()
    assert summary["achieved_sparsity"] == 0.5
    assert (summary["early_bird"]["trigger_epoch"], summary["early_bird"]["trigger"]) == \
        (2, "distance")
    for bn, keep in ((model.bn1, KEEP_1), (model.bn2, KEEP_2)):
        assert (bn.weight != 0).tolist() == keep


@pytest.mark.parametrize(("argv", "message"), [
    (["schedule=early_bird"], "schedule=early_bird: draws a ticket of channels: needs "
     "granularity=channel"),
    (["schedule=early_bird", "granularity=channel", "method=pdp", "sparsity=0.5"],
     "method=pdp: schedule=early_bird applies its ticket as binary channel masks"),
    (["schedule=early_bird", "granularity=channel", "method=magnitude", "schedule.pairs=all"],
     "schedule.pairs=all: must be consecutive or newest"),
    (["schedule=early_bird", "granularity=channel", "method=magnitude", "schedule.pairs=newest",
      "schedule.window=1"], "schedule.window=1: must be >= 2 with schedule.pairs=newest"),
    (["schedule=early_bird", "granularity=channel", "method=magnitude", "sparsity=0.5"],
     "schedule=early_bird: ranks channels by BatchNorm scales, but the channel group of "),
])
def test_bad_early_bird_configs_are_one_line(argv, message):
    with pytest.raises(PdpruneError, match=message.replace("(", r"\(")):
        check(argv)  # the default model, an MLP, has no BatchNorm


EB_RUN = ["dataset=synthetic", "trainer.epochs=4", "trainer.progress=false", "model=resnet20",
          "model.width=0.5", "trainer.max_train_batches=3",
          "granularity=channel", "schedule=early_bird", "sparsity=0.5", "method=magnitude",
          # two distances below 1: fires after epoch 3, after the kill at epoch 2
          "schedule.window=2", "schedule.epsilon=1.0", "schedule.max_epoch=3"]


@pytest.mark.slow
def test_early_bird_run_logs_distances_prunes_once_and_resumes_bit_equal(
        make_cfg, tmp_path, monkeypatch):
    # the queue's masks and distances live in the checkpoint: killed after epoch 2, the
    # resumed run fires after epoch 3 as the whole one does
    check_resume(make_cfg, tmp_path, monkeypatch, EB_RUN)
    whole = tmp_path / "whole"
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [("eb_distance" in r) for r in records] == [True] * 3 + [False]
    assert records[0]["eb_distance"] is None
    assert all(0 <= r["eb_distance"] < 1 for r in records[1:3])
    assert [r.get("eb_prune") for r in records] == [None, None, "distance", None]
    summary = json.loads((whole / "summary.json").read_text())
    eb = summary["early_bird"]
    assert (eb["trigger_epoch"], eb["trigger"]) == (3, "distance")
    assert eb["distances"] == [r["eb_distance"] for r in records[:3]]
    channels = summary["channels"]
    assert channels["pruned"] == channels["expected_pruned"]
    pruned = channels["expected_pruned"] / channels["total"]
    assert pruned == pytest.approx(0.5, abs=0.05)  # counts rounded to blocks of 8 channels
    assert [r["target_sparsity"] for r in records] == [0] * 3 + [pytest.approx(pruned)]
    macs = summary["training_cost"]["forward_macs_per_epoch"]
    assert macs[:3] == [summary["flops_dense"]] * 3 and macs[3] < macs[0]
