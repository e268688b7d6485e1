"""Tiny datasets in the real on-disk formats, for tests and end-to-end runs:

    python -m tests.fakedata cifar10 /tmp/tiny-cifar    # then prune-train dataset=cifar10
    python -m tests.fakedata imagenet /tmp/tiny-inet     #   dataset.root=/tmp/tiny-... ...

Random pixels, so nothing is learnable; the point is that the files go through the same readers
as the real datasets (torchvision's CIFAR pickles, ImageFolder trees of PNGs, MNIST's IDX).
"""

from __future__ import annotations

import gzip
import pickle
import sys
from pathlib import Path

import numpy as np

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 8, n_test: int = 10,
                seed: int = 0) -> dict[str, np.ndarray]:
    """torchvision's layout under root: cifar-10-batches-py/data_batch_1..5 + test_batch, or
    cifar-100-python/train + test; bytes keys as the real (Python 2) pickles load. CIFAR-10 has
    5 batches of `per_batch` images, CIFAR-100 one train file of 5 * per_batch. Returns the
    arrays written: train_x (N, 3072) uint8 in file order, train_y, test_x, test_y."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR_FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 5 * per_batch
    classes = 10 if name == "cifar10" else 100
    out = {"train_x": rng.integers(0, 256, (n_train, 3072), dtype=np.uint8),
           "train_y": rng.integers(0, classes, n_train),
           "test_x": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
           "test_y": rng.integers(0, classes, n_test)}

    def entry(x: np.ndarray, y: np.ndarray, label: str) -> dict:
        names = [f"img_{i}.png".encode() for i in range(len(x))]
        if name == "cifar10":
            return {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": x,
                    b"filenames": names}
        return {b"filenames": names, b"batch_label": label.encode(),
                b"fine_labels": [int(v) for v in y],
                b"coarse_labels": [int(v) // 5 for v in y], b"data": x}

    if name == "cifar10":
        for i in range(5):
            part = slice(i * per_batch, (i + 1) * per_batch)
            _pickle(folder / f"data_batch_{i + 1}",
                    entry(out["train_x"][part], out["train_y"][part], f"training batch {i + 1}"))
        _pickle(folder / "test_batch", entry(out["test_x"], out["test_y"], "testing batch 1"))
        _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    else:
        _pickle(folder / "train", entry(out["train_x"], out["train_y"], "training"))
        _pickle(folder / "test", entry(out["test_x"], out["test_y"], "testing"))
        _pickle(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    return out


def write_imagefolder(root: Path, classes: tuple[str, ...] = ("ant", "bee", "cat"),
                      n_train: int = 5, n_val: int = 2, size: tuple[int, int] = (40, 48),
                      val_classes: tuple[str, ...] | None = None,
                      seed: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """root/train/<class>/*.png and root/val/<class>/*.png of random RGB pixels, (height, width)
    = size, varying a little per image. Returns {split: [(path, class index), ...]}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    for split, count, names in (("train", n_train, classes),
                                ("val", n_val, val_classes or classes)):
        for name in names:
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = size[0] + int(rng.integers(0, 9)), size[1] + int(rng.integers(0, 9))
                path = folder / f"{name}_{i:03d}.png"
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
                written[split].append((path, sorted(classes).index(name)))
    return written


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(root: Path, n_train: int = 40, n_test: int = 10, gz: bool = True,
              seed: int = 0) -> dict[str, np.ndarray]:
    """MNIST-format IDX files (28x28 images, labels 0-9) in root; {stem: array written}."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(IDX_STEMS, (rng.integers(0, 256, (n_train, 28, 28)),
                                  rng.integers(0, 10, n_train),
                                  rng.integers(0, 256, (n_test, 28, 28)),
                                  rng.integers(0, 10, n_test)), strict=True))
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (root / stem).write_bytes(data)
    return arrays


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("cifar10", "cifar100", "imagenet", "mnist"):
        sys.exit("usage: python -m tests.fakedata cifar10|cifar100|imagenet|mnist FOLDER")
    kind, root = argv[0], Path(argv[1])
    if kind in CIFAR_FOLDERS:
        write_cifar(root, kind, per_batch=64, n_test=64)
    elif kind == "imagenet":
        write_imagefolder(root, size=(64, 64), n_train=8, n_val=4)
    else:
        write_idx(root, n_train=320, n_test=64)
    print(root)


if __name__ == "__main__":
    main(sys.argv[1:])
