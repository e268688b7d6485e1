"""Threshold, exact top-k and the budgets, including the global cut (METHODS.md sections 1-2)."""

from __future__ import annotations

import pytest
import torch

from pdprune.pruning.selection import (
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
