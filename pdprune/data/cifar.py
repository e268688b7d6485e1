"""CIFAR-10 and CIFAR-100 from torchvision's python-pickle folders: 50k training images
(less a seeded val_size held out) and 10k test images, 32x32 RGB.

Read here rather than through torchvision's CIFAR classes, which md5-check every file: the same
files load, and so do the tiny ones tests write. The uint8 images stay whole in memory (on the
training device when dataset.device_resident); random crop + flip and normalisation run on
whole batches there (augment.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ..errors import ConfigError, PdpruneError
from .augment import RandomCropFlip
from .bundle import DataBundle, TensorLoader, normalizer, one_line, seeded_split
from .download import download
from .locate import CIFAR, CIFARLayout, find_files, locate_dataset

# per-channel mean and std of the 50k training images, in [0, 1]
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
PADDING = 4


def _entry(batch: dict, key: str):
    """batch[key]: CIFAR's pickles were written by Python 2, so keys may be str or bytes."""
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    return None


# What a CIFAR batch pickle may name: numpy arrays and the codec Python 3 pickles bytes with.
# Anything else (os.system, a class with a __reduce__) is refused before it could run.
SAFE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a dataset from elsewhere must not
    be able to execute code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}: a CIFAR batch holds only "
                                         "arrays, lists and bytes")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, layout: CIFARLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickle: (N, 3, 32, 32) uint8 images and (N,) int64 labels; PdpruneError (one line)
    when the file is not a CIFAR batch."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="latin1").load()  # latin1: as torchvision reads
    except Exception as exc:  # unpickling raises almost anything on a bad file
        raise PdpruneError(f"{path}: not a CIFAR pickle ({one_line(exc)})") from None
    if not isinstance(batch, dict):
        raise PdpruneError(f"{path}: not a CIFAR batch (holds a {type(batch).__name__}, "
                           "expected a dict with b'data' and labels)")
    data, labels = _entry(batch, "data"), _entry(batch, layout.label_key)
    if data is None or labels is None:
        missing = " and ".join(f"b'{k}'" for k, v in (("data", data),
                                                      (layout.label_key, labels)) if v is None)
        raise PdpruneError(f"{path}: not a {layout.title} batch (no {missing})")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise PdpruneError(f"{path}: b'data' is {data.dtype} of shape {data.shape}, expected "
                           "uint8 of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise PdpruneError(f"{path}: b'{layout.label_key}' are not integers ({exc})") from None
    if labels.shape != (len(data),):
        raise PdpruneError(f"{path}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        bad = labels.max() if labels.max() >= layout.num_classes else labels.min()
        raise PdpruneError(f"{path}: label {bad} out of range for {layout.num_classes} classes")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are R, G, B planes
    return images, torch.from_numpy(labels)


def read_cifar(folder: Path, names: tuple[str, ...],
               layout: CIFARLayout) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_cifar_batch(folder / name, layout) for name in names]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def build_cifar(cfg: DictConfig, seed: int, device: torch.device | None = None) -> DataBundle:
    device = device or torch.device("cpu")
    layout = CIFAR[cfg.name]
    folder = locate_dataset(cfg)
    if cfg.download:
        download(cfg.name, folder)
        folder = find_files(cfg, folder)
    train_x, train_y = read_cifar(folder, layout.train, layout)
    test_x, test_y = read_cifar(folder, layout.test, layout)
    if cfg.val_size >= len(train_x):
        raise ConfigError("dataset.val_size", cfg.val_size,
                          f"leaves no training images ({len(train_x)} in {folder})")
    train_idx, val_idx = seeded_split(len(train_x), (cfg.val_size,), cfg.split_seed)
    mean, std = STATS[cfg.name]
    norm = normalizer(mean, std, scale=1 / 255, device=device)
    augment = RandomCropFlip(PADDING) if cfg.augment else None

    def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, **kw) -> TensorLoader:
        return TensorLoader(x, y, batch_size, transform=norm, device=device,
                            resident=cfg.device_resident, **kw)

    return DataBundle(
        name=cfg.name,
        train=loader(train_x[train_idx], train_y[train_idx], cfg.batch_size, shuffle=True,
                     drop_last=True, seed=seed, augment=augment),
        val=loader(train_x[val_idx], train_y[val_idx], cfg.eval_batch_size),
        test=loader(test_x, test_y, cfg.eval_batch_size),
        input_shape=(3, 32, 32),
        num_classes=layout.num_classes,
    )
