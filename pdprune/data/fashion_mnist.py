"""Fashion-MNIST from IDX files: 60k training and 10k test images, 28x28, 10 classes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ..errors import PdpruneError
from .bundle import DataBundle, TensorLoader, normalizer, seeded_split
from .locate import idx_file, locate_dataset

MEAN, STD = 0.2860, 0.3530  # of the 60k training images, in [0, 1]
IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (optionally gzipped) as a uint8 tensor of the shape its header declares."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise PdpruneError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise PdpruneError(f"{path}: header says {shape} but holds {body.size} values")
    return torch.from_numpy(body.reshape(shape).copy())


def build_fashion_mnist(cfg: DictConfig, seed: int) -> DataBundle:
    root = locate_dataset(cfg)

    def load(stem: str) -> torch.Tensor:
        return read_idx(idx_file(root, stem))

    train_x, train_y = load("train-images-idx3-ubyte"), load("train-labels-idx1-ubyte")
    test_x, test_y = load("t10k-images-idx3-ubyte"), load("t10k-labels-idx1-ubyte")
    train_idx, val_idx = seeded_split(len(train_x), (cfg.val_size,), cfg.split_seed)
    norm = normalizer(MEAN, STD, scale=1 / 255)

    def images(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)  # (N, 1, 28, 28), still uint8: normalised per batch

    return DataBundle(
        name="fashion_mnist",
        train=TensorLoader(images(train_x[train_idx]), train_y[train_idx].long(), cfg.batch_size,
                           shuffle=True, drop_last=True, seed=seed, transform=norm),
        val=TensorLoader(images(train_x[val_idx]), train_y[val_idx].long(), cfg.eval_batch_size,
                         transform=norm),
        test=TensorLoader(images(test_x), test_y.long(), cfg.eval_batch_size, transform=norm),
        input_shape=(1, 28, 28),
        num_classes=10,
    )
