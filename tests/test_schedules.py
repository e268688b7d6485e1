"""Schedules as functions of the real optimizer step (docs/methods.md#pdp and
#gradual-magnitude-pruning)."""

from __future__ import annotations

import pytest

from pdprune.pruning.schedules import CubicSchedule, OneShotSchedule, PDPSchedule


def test_cubic_start_middle_end():
    # t0 = 100, n * dt = 10 * 20 = 200 steps, s_i = 0.1, s_f = 0.9
    s = CubicSchedule(target=0.9, initial_sparsity=0.1, start_step=100, span_steps=200, dt=20)
    assert s.sparsity_at(99) == 0.0  # not started
    assert s.sparsity_at(100) == pytest.approx(0.1)  # s_i at t0
    # halfway: s_f + (s_i - s_f) (1 - 1/2)^3 = 0.9 - 0.8 / 8 = 0.8
    assert s.sparsity_at(200) == pytest.approx(0.8)
    assert s.sparsity_at(300) == 0.9  # exactly s_f at t0 + n dt
    assert s.sparsity_at(10_000) == 0.9


def test_cubic_changes_only_every_dt_steps():
    s = CubicSchedule(target=0.9, initial_sparsity=0.0, start_step=0, span_steps=100, dt=10)
    values = [s.sparsity_at(t) for t in range(0, 101)]
    changes = [t for t in range(1, 101) if values[t] != values[t - 1]]
    assert changes == list(range(10, 101, 10))
    # s_t at t = 30: 0.9 * (1 - (1 - 0.3)^3)
    assert values[30] == pytest.approx(0.9 * (1 - 0.7**3))


def test_pdp_warmup_then_linear_ramp_per_epoch():
    s = PDPSchedule(target=0.8, warmup_epochs=2, ramp_epochs=4, steps_per_epoch=10)
    by_epoch = [s.sparsity_at(10 * e) for e in range(8)]
    assert by_epoch == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert s.sparsity_at(10 * 5 + 9) == 0.8  # constant within an epoch, exact at the end


def test_pdp_with_paper_eps():
    s = PDPSchedule(target=0.5, warmup_epochs=1, ramp_epochs=1, steps_per_epoch=1, eps=0.25)
    assert [s.sparsity_at(e) for e in range(7)] == pytest.approx([0, .125, .25, .375, .5, .5, .5])


def test_oneshot():
    s = OneShotSchedule(target=0.7, epoch=3, steps_per_epoch=5)
    assert s.sparsity_at(14) == 0.0
    assert s.sparsity_at(15) == 0.7
