"""Threshold, exact top-k and the budgets, including the global cut (docs/methods.md#budgets)."""

from __future__ import annotations

import pytest
import torch

from pdprune.pruning.selection import (
    ThresholdSearch,
    global_budget,
    keep_largest,
    midpoint_threshold,
    uniform_budget,
)


def test_midpoint_threshold_per_row():
    mags = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.5, 0.1, 0.9, 0.7]])
    t = midpoint_threshold(mags, pruned=2)
    assert t.squeeze(1).tolist() == pytest.approx([2.5, (0.5 + 0.7) / 2])


def test_keep_largest_keeps_exactly_k_even_with_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.5, 2.0]])
    for pruned in range(7):
        mask = keep_largest(scores, pruned)
        assert int(mask.sum()) == 6 - pruned
    assert keep_largest(scores, 4)[0, 5]  # the largest survives


def test_global_budget_counts_what_falls_below_one_cut():
    a = torch.tensor([0.1, 0.2, 0.9, 1.0])  # two of the four smallest overall
    b = torch.tensor([0.05, 0.3, 0.15, 0.8, 0.7, 0.6])
    # sorted: .05 .1 .15 .2 .3 | .6 .7 .8 .9 1.0; sparsity 0.5 prunes the 5 smallest
    assert global_budget([a, b], 0.5) == [2, 3]
    assert global_budget([a, b], 0.0) == [0, 0]
    assert sum(global_budget([a, b], 0.9)) == 9


def test_uniform_budget_rounds_per_layer():
    assert uniform_budget([10, 7, 100], 0.5) == [5, 4, 50]


def test_threshold_search_equals_full_selection_while_weights_drift():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 20_000, generator=gen)
    search = ThresholdSearch()
    hits = 0
    for step in range(60):
        pruned = 10_000 + 150 * (step // 10)  # the cut jumps every 10 steps, as per epoch
        if step % 7 == 3:  # a burst of ties right at the cut
            w[0, :50] = w.abs().kthvalue(pruned).values
        w += 0.01 * torch.randn(w.shape, generator=gen)  # an SGD step's worth of drift
        mags = w.abs()
        width = search.width
        got = search(mags, pruned)
        assert torch.equal(got, midpoint_threshold(mags, pruned)), step
        hits += search.width < width  # the bracket narrows on a hit, widens on a fallback
    assert hits > 40  # the bracket, not the full selection, did most of the work


def test_masked_min_path_equals_full_selection_with_ties():
    # the CUDA path (one kthvalue + masked min), exercised on the CPU through several rows
    mags = torch.tensor([[0.1, 0.2, 0.2, 0.4], [0.3, 0.3, 0.3, 0.3], [0.5, 0.1, 0.9, 0.7]])
    for pruned in (1, 2, 3):
        assert torch.equal(ThresholdSearch()(mags, pruned), midpoint_threshold(mags, pruned))
