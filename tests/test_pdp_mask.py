"""PDP's soft mask and its gradient against values computed by hand (docs/methods.md#pdp)."""

from __future__ import annotations

import math

import pytest
import torch

from pdprune.pruning.masks import PDPSoftMask
from pdprune.pruning.structures.granularity import Unstructured

W = [0.1, -0.2, 0.3, 0.4]
TAU = 0.01


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def hand_mask() -> list[float]:
    # prune 2 of 4: the cut lies between |w| = 0.2 (largest pruned) and 0.3 (smallest kept)
    t = (0.2 + 0.3) / 2
    return [sigmoid((w * w - t * t) / TAU) for w in W]


def make_mask(pruned: int = 2, tau: float = TAU) -> PDPSoftMask:
    mask = PDPSoftMask(Unstructured(), tau)
    mask.pruned = pruned
    return mask


def test_threshold_is_midpoint_of_magnitudes_either_side_of_cut():
    w = torch.tensor(W)
    assert make_mask().threshold(w).item() == pytest.approx(0.25)
    assert make_mask(pruned=1).threshold(w).item() == pytest.approx(0.15)
    assert make_mask(pruned=3).threshold(w).item() == pytest.approx(0.35)


def test_soft_mask_matches_hand_computed_sigmoid():
    w = torch.tensor(W)
    got = make_mask()(w)
    want = [m * x for m, x in zip(hand_mask(), W, strict=True)]
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_gradient_flows_through_the_mask():
    w = torch.tensor(W, requires_grad=True)
    make_mask()(w).sum().backward()
    m = hand_mask()
    # d(m w)/dw = m + (2 w^2 / tau) m (1 - m): not just m, which a no_grad mask would give
    want = [mi + (2 * x * x / TAU) * mi * (1 - mi) for mi, x in zip(m, W, strict=True)]
    assert w.grad.tolist() == pytest.approx(want, rel=1e-4)
    assert w.grad[1].item() != pytest.approx(m[1], rel=1e-3)


def test_mask_math_is_float32_for_bfloat16_weights():
    w = torch.tensor(W, dtype=torch.bfloat16)
    got = make_mask()(w)
    assert got.dtype == torch.bfloat16
    # in bf16 the logits (w^2 - t^2)/tau would lose most digits; fp32 keeps the hand values
    want = [m * float(x) for m, x in zip(hand_mask(), w.float().tolist(), strict=True)]
    assert got.float().tolist() == pytest.approx(want, rel=1e-2, abs=1e-3)


def test_no_pruning_is_the_identity_and_hard_mask_is_m_at_least_half():
    w = torch.tensor(W)
    assert torch.equal(make_mask(pruned=0)(w), w)
    assert make_mask().hard_mask(w).tolist() == [[False, False, True, True]]


def test_ties_on_the_threshold_are_counted():
    w = torch.tensor([0.1, 0.2, 0.2, 0.4])  # pruning 2 cuts between two equal magnitudes
    mask = make_mask()
    assert mask.ties(w) == 2
    assert mask.hard_mask(w).sum().item() == 3  # both tied weights are kept: m = 0.5


def test_fused_unstructured_path_equals_plain_autograd():
    torch.manual_seed(0)
    w1 = (0.05 * torch.randn(64, 32)).requires_grad_()
    w2 = w1.detach().clone().requires_grad_()
    fused, plain = make_mask(pruned=1500, tau=1e-4), make_mask(pruned=1500, tau=1e-4)
    g = torch.randn(64, 32)
    (fused(w1) * g).sum().backward()  # _MaskedWeight
    m = plain.soft_mask(w2).reshape(w2.shape)  # sigmoid through autograd
    (m * w2 * g).sum().backward()
    torch.testing.assert_close(fused(w1.detach()), (m * w2).detach(), rtol=0, atol=0)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flush", [True, False])
def test_a_run_flushes_subnormal_mask_products_on_the_cpu(make_cfg, tmp_path, flush):
    """PDP's mask of a pruned weight is sigmoid of a large negative: m * w lands in the
    subnormal floats, on which CPU kernels run ~100x slower. A run flushes them to zero
    (trainer.flush_denormal), and the mask product shows it."""
    from pdprune.run import run

    from .conftest import TINY
    try:
        run(make_cfg(*TINY, "trainer.epochs=1", f"trainer.flush_denormal={flush}"), tmp_path)
        # t = 0.75 (the midpoint), (0.5^2 - t^2) / tau = -95: m = sigmoid(-95) = 5.5e-42 and
        # m * 0.5 = 2.8e-42, below float32's smallest normal (1.2e-38)
        w = torch.tensor([[0.5, 1.0]])
        mask = PDPSoftMask(Unstructured(), tau=0.3125 / 95)
        mask.set(1)
        product = mask(w)[0, 0].item()
        if flush:
            assert product == 0.0
        else:
            assert product == pytest.approx(0.5 / (1 + math.exp(95)), rel=1e-2)
    finally:
        torch.set_flush_denormal(False)
