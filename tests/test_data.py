"""Datasets: the IDX reader on files written here, splits, and the shared bundle shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pdprune.data import build_data
from pdprune.data.fashion_mnist import read_idx
from pdprune.data.locate import FASHION_MNIST_DEFAULT_ROOT
from pdprune.errors import PdpruneError

from .fakedata import idx_bytes, write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_gzipped_and_plain_idx(tmp_path, gz):
    files = write_idx(tmp_path, gz=gz)
    cfg = OmegaConf.create({"name": "fashion_mnist", "root": str(tmp_path), "batch_size": 8,
                            "eval_batch_size": 16, "val_size": 10, "split_seed": 0})
    data = build_data(cfg, seed=0)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (30, 10, 10)
    assert len(data.train) == 3  # 30 // 8 with the ragged batch dropped
    x, y = next(iter(data.test))
    raw = torch.tensor(files["t10k-images-idx3-ubyte"][:10], dtype=torch.float32)
    assert torch.allclose(x[:, 0], (raw / 255 - 0.2860) / 0.3530)
    assert y.tolist() == files["t10k-labels-idx1-ubyte"].tolist()


def test_read_idx_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(idx_bytes(np.zeros((4, 3)))[:-2])
    with pytest.raises(PdpruneError, match="header says"):
        read_idx(path)


def test_digits_split_is_seeded_and_disjoint(make_cfg):
    cfg = make_cfg().dataset
    a, b = build_data(cfg, seed=0), build_data(cfg, seed=0)
    sizes = (a.train.num_samples, a.val.num_samples, a.test.num_samples)
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 270
    assert torch.equal(a.test.x, b.test.x)
    rows = {tuple(r.flatten().tolist()) for r in a.test.x}
    overlap = sum(tuple(r.flatten().tolist()) in rows for r in a.train.x)
    assert overlap < 5  # digits has a few duplicate images; the index split itself is disjoint


def test_train_loader_order_is_restored_from_state():
    x, y = torch.arange(20.0).unsqueeze(1), torch.arange(20)
    from pdprune.data.bundle import TensorLoader
    a = TensorLoader(x, y, 4, shuffle=True, seed=3)
    list(a)
    state = a.state_dict()
    expected = [yb.tolist() for _, yb in a]
    b = TensorLoader(x, y, 4, shuffle=True, seed=99)
    b.load_state_dict(state)
    assert [yb.tolist() for _, yb in b] == expected


@pytest.mark.skipif(not FASHION_MNIST_DEFAULT_ROOT.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_default_root(make_cfg):
    data = build_data(make_cfg("dataset=fashion_mnist").dataset, seed=0)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (
        55000, 5000, 10000)
    x, y = next(iter(data.train))
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32
    assert set(data.test.y.tolist()) == set(range(10))
