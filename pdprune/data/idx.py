"""The MNIST family's IDX files, and the builder MNIST and Fashion-MNIST share."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ..errors import PdpruneError
from .bundle import DataBundle, TensorLoader, normalizer, seeded_split
from .download import download
from .locate import IDX_DATASETS, IDX_UBYTE, find_files, idx_file, locate_dataset
from .sizes import held_out

IDX_DTYPES = {IDX_UBYTE: np.uint8}


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (optionally gzipped) as a uint8 tensor of the shape its header declares."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # a .gz that is not gzip, cut short, corrupt
        raise PdpruneError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise PdpruneError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise PdpruneError(f"{path}: IDX header cut short")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise PdpruneError(f"{path}: header says {shape} but holds {body.size} values")
    return torch.from_numpy(body.reshape(shape).copy())


def read_idx_pair(folder: Path, images: str, labels: str,
                  num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) uint8 images and (N,) int64 labels, checked against each other (and, when
    given, against the class count)."""
    x_path, y_path = idx_file(folder, images), idx_file(folder, labels)
    x, y = read_idx(x_path), read_idx(y_path)
    if x.dim() != 3:
        raise PdpruneError(f"{x_path}: holds shape {tuple(x.shape)}, expected (N, H, W) images")
    if y.dim() != 1 or len(y) != len(x):
        raise PdpruneError(f"{y_path}: holds shape {tuple(y.shape)}, expected ({len(x)},) labels "
                           f"to match {x_path.name}")
    if num_classes is not None and len(y) and int(y.max()) >= num_classes:
        raise PdpruneError(f"{y_path}: label {int(y.max())} out of range for {num_classes} classes")
    return x.unsqueeze(1), y.long()


def build_idx_dataset(cfg: DictConfig, seed: int, device: torch.device, *, mean: float,
                      std: float) -> DataBundle:
    """The training images (less a seeded val_size held out: sizes.py) and the test images,
    uint8 in memory (on `device` when dataset.device_resident), normalised per batch. The class
    count is read from the training labels (largest + 1): a user's own set in MNIST's format
    may have fewer (or more) than 10."""
    root = locate_dataset(cfg)
    if cfg.get("download", False):
        download(cfg.name, root)
        root = find_files(cfg, root)
    train_x, train_y = read_idx_pair(root, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    num_classes = int(train_y.max()) + 1 if len(train_y) else 0
    test_x, test_y = read_idx_pair(root, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                   num_classes)
    n_val = held_out(cfg.val_size, len(train_x), "dataset.val_size", str(root))
    train_idx, val_idx = seeded_split(len(train_x), (n_val,), cfg.split_seed)
    norm = normalizer(mean, std, scale=1 / 255)
    resident = bool(cfg.get("device_resident", True))

    def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, **kw) -> TensorLoader:
        return TensorLoader(x, y, batch_size, transform=norm, device=device, resident=resident,
                            **kw)

    return DataBundle(
        name=cfg.name,
        train=loader(train_x[train_idx], train_y[train_idx], cfg.batch_size, shuffle=True,
                     drop_last=True, seed=seed),
        val=loader(train_x[val_idx], train_y[val_idx], cfg.eval_batch_size),
        test=loader(test_x, test_y, cfg.eval_batch_size),
        input_shape=tuple(train_x.shape[1:]),
        num_classes=num_classes,
    )


__all__ = ["IDX_DATASETS", "build_idx_dataset", "read_idx", "read_idx_pair"]
