"""The CUDA path: bf16 autocast with float32 mask math, and a whole run on the GPU.
Skipped where no GPU is present (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from pdprune.pruning.masks import PDPSoftMask
from pdprune.pruning.structures.granularity import Unstructured
from pdprune.run import run

from .conftest import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_pdp_mask_is_float32_and_differentiable_under_bf16_autocast():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32).cuda()
    mask = PDPSoftMask(Unstructured(), tau=1e-4)
    mask.pruned = 1600
    parametrize.register_parametrization(layer, "weight", mask)
    x = torch.randn(8, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        masked = layer.weight
        out = layer(x)
    assert masked.dtype == torch.float32 and out.dtype == torch.bfloat16
    w = layer.parametrizations.weight.original
    expected = mask.soft_mask(w.detach().float()).reshape(w.shape) * w.detach()
    torch.testing.assert_close(masked.detach(), expected)
    masked.sum().backward()
    m = mask.soft_mask(w.detach()).reshape(w.shape)
    want = m + (2 * w.detach() ** 2 / 1e-4) * m * (1 - m)
    torch.testing.assert_close(w.grad, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["pdp", "gmp"])
def test_whole_run_on_cuda_with_bf16(make_cfg, tmp_path, method):
    cfg = make_cfg(*TINY, f"method={method}", "trainer.device=cuda", "trainer.amp=bf16",
                   "model=lenet", "sparsity=0.8")
    summary = run(cfg, tmp_path)
    assert summary["sparsity_check"]["exact"]
    assert summary["achieved_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert summary["accuracy"]["test"]["top1"] > 0.5  # 4 classes: chance is 0.25


def test_two_four_linear_layers_run_the_semi_structured_kernel(make_cfg, tmp_path):
    from pdprune.export.semi_structured import unsupported_reason

    if unsupported_reason():
        pytest.skip(unsupported_reason())
    cfg = make_cfg(*TINY, "granularity=nm", "method=gmp", "model.hidden=[256,256]",
                   "trainer.device=cuda", "export.latency_repeats=10")
    kernel = run(cfg, tmp_path)["sparse_kernel"]
    assert kernel["used"] and kernel["layers"] == ["fc1", "fc2"], kernel
    assert list(kernel["skipped"]) == ["classifier"]  # the output layer stays dense
    assert kernel["max_abs_diff_vs_dense_bf16"] < 0.05
    assert set(kernel["latency"]) == {"1", "64"} and kernel["latency"]["64"]["speedup"] > 0


def test_channel_pruning_and_compact_export_on_cuda(make_cfg, tmp_path):
    cfg = make_cfg(*TINY, "model=lenet", "method=pdp", "granularity=channel", "sparsity=0.5",
                   "trainer.device=cuda", "trainer.amp=bf16", "export.compact=true",
                   "export.latency=true", "export.latency_repeats=3")
    summary = run(cfg, tmp_path)
    assert summary["channels"]["pruned"] == summary["channels"]["expected_pruned"]
    assert summary["export"]["compact"]["max_abs_diff_vs_masked"] <= 1e-5  # float64
    assert set(summary["latency"]) == {"cpu", "cuda", "cpu_compiled"}  # compiled: moved to CPU
    assert set(summary["latency"]["cpu_compiled"]["64"]) == {"dense", "exported"}
