"""N:M granularity: groups along the input dimension, per-group PDP threshold, exact patterns."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pdprune.config.preflight import check
from pdprune.errors import PdpruneError
from pdprune.pruning import build_pruner
from pdprune.pruning.masks import PDPSoftMask
from pdprune.pruning.structures.granularity import NM


def test_groups_run_along_input_channels():
    w = torch.randn(3, 8, 2, 2)  # conv: groups of 4 input channels at each kernel position
    rows = NM(2, 4).magnitudes(w)
    assert rows.shape == (3 * 2 * 2 * 2, 4)
    assert torch.equal(rows[0], w[0, 0:4, 0, 0].abs())
    assert torch.equal(rows[1], w[0, 4:8, 0, 0].abs())
    assert torch.equal(NM(2, 4).expand(rows, w), w.abs())
    lin = torch.randn(5, 12)
    assert torch.equal(NM(1, 4).magnitudes(lin)[3], lin[1, 0:4].abs())
    assert torch.equal(NM(1, 4).expand(NM(1, 4).magnitudes(lin), lin), lin.abs())
    assert not NM(2, 4).supports(torch.randn(4, 6, 3, 3)) and NM(2, 4).supports(lin)


def test_pdp_threshold_is_per_group():
    mask = PDPSoftMask(NM(1, 4), tau=0.01)
    mask.pruned = 3
    w = torch.tensor([[0.1, 0.4, 0.2, 0.3, 0.8, 0.5, 0.6, 0.7]])  # two groups of 4
    got = mask(w)
    t = [(0.3 + 0.4) / 2, (0.7 + 0.8) / 2]  # midpoint of the 1st and 2nd largest, per group
    want = [x / (1 + math.exp(-(x * x - t[i // 4] ** 2) / 0.01)) for i, x in
            enumerate(w[0].tolist())]
    assert got[0].tolist() == pytest.approx(want, rel=1e-5)
    assert mask.hard_mask(w).tolist() == [[False, True, False, False], [True, False, False, False]]


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 5))


@pytest.mark.parametrize("method", ["pdp", "gmp", "magnitude", "random"])
@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4)])
def test_every_group_holds_exactly_n_after_hardening(make_cfg, method, n, m):
    net = model()
    cfg = make_cfg(f"method={method}", "granularity=nm", f"granularity.n={n}",
                   f"granularity.m={m}", "trainer.epochs=4")
    pruner = build_pruner(cfg, net, steps_per_epoch=3)
    assert pruner.left_dense == ["0"]  # 3 input channels: 4 does not divide
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for step in range(12):
        pruner.before_step(step)
        loss = nn.functional.cross_entropy(net(torch.randn(8, 3, 8, 8, generator=gen)),
                                           torch.randint(5, (8,), generator=gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # a tie inside a group must not break the pattern
    with torch.no_grad():
        pruner.structure.layers[0].original[0, 0:4, 0, 0] = 0.25
    results = pruner.finalize()
    for result, layer in zip(results, pruner.structure.layers, strict=True):
        nonzero = (NM(n, m).magnitudes(layer.module.weight) != 0).sum(dim=-1)
        assert torch.all(nonzero == n), result.name
        assert result.groups == result.groups_exact == len(nonzero)
        assert result.pruned == result.expected_pruned == result.params * (m - n) // m
    assert pruner.final_sparsity == (m - n) / m


@pytest.mark.parametrize(("argv", "message"), [
    (["granularity=nm", "granularity.n=4"], "granularity.n=4: must be in [1, granularity.m=4)"),
    (["granularity=nm", "sparsity=0"], "sparsity=0.0: must be > 0 with granularity=nm"),
])
def test_bad_nm_config_is_one_line(argv, message):
    with pytest.raises(PdpruneError) as err:
        check(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["pdp", "gmp"])
def test_summary_reports_the_pattern_and_the_layers_left_dense(make_cfg, tmp_path, method):
    from pdprune.run import run

    cfg = make_cfg("model=lenet", f"method={method}", "granularity=nm", "granularity.n=1",
                   "granularity.m=4", "trainer.epochs=4", "trainer.progress=false")
    summary = run(cfg, tmp_path)
    assert summary["groups"]["exact"] == summary["groups"]["total"] > 0
    assert summary["left_dense"] == ["features.0", "features.3"]  # 1 and 6 input channels
    assert summary["target_sparsity"] == summary["achieved_sparsity"] == 0.75
    assert all(layer["groups_exact"] == layer["groups"] for layer in summary["layers"])


def test_summary_says_no_sparse_kernel_was_used(make_cfg, tmp_path):
    from pdprune.run import run

    summary = run(make_cfg("granularity=nm", "trainer.epochs=2", "trainer.progress=false",
                           "dataset=synthetic"), tmp_path)
    kernel = summary["sparse_kernel"]
    if not torch.cuda.is_available():  # tests/test_cuda.py checks the kernel where it exists
        assert kernel == {"used": False, "reason": "no sparse kernel: no CUDA device; the zeros "
                          "are stored and multiplied densely"}


def test_only_two_four_weights_convert():
    from pdprune.export.semi_structured import is_two_four

    weight = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3], [0, 0, 0, 0, 1, 1, 0, 0]])
    assert is_two_four(weight)
    weight[1, 6] = 1.0  # three non-zeros in the second group of row 1
    assert not is_two_four(weight)
    assert not is_two_four(torch.ones(4, 6))  # 6 inputs: no whole groups of 4
