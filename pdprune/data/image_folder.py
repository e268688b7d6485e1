"""dataset=image_folder: a user's own images in class folders (torchvision ImageFolder layout),
and dataset=imagenet, which is this builder on ImageNet's train/ and val/ trees.

Which folder is which split: image_tree.py. Every image is decoded to dataset.channels (3: RGB,
1: grayscale) and resized: Resize(resize_size) then CenterCrop(image_size).

Two ways to serve them, by size:
- in memory (dataset.in_memory, null = auto: when the decoded uint8 set, images x channels x
  image_size^2, is at most IN_MEMORY_BYTES): decoded once (by num_workers processes) into uint8
  tensors and served by TensorLoader like CIFAR: batches are slices, augmentation (random crop
  from a zero-padded image + flip) and normalisation (the training images' own per-channel mean
  and std) are tensor ops on the training device. A folder of a few thousand images trains as
  fast as CIFAR.
- from disk (ImageNet, and large trees): image_files.ImageLoader, decoded every epoch by
  num_workers processes; train: RandomResizedCrop + flip; ImageNet's mean and std.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torchvision.datasets.folder import make_dataset

from ..errors import PdpruneError
from ..signals import ignore_stop_signals
from .augment import RandomCropFlip
from .bundle import DataBundle, TensorLoader, normalizer, seeded_split
from .image_files import (
    GRAY_MEAN,
    GRAY_STD,
    MEAN,
    STD,
    ImageFiles,
    ImageLoader,
    eval_transform,
    train_transform,
    worker_message,
)
from .image_tree import IMG_EXTENSIONS, class_folders, find_image_tree, image_size, resize_size
from .locate import locate_dataset
from .sizes import held_out

IN_MEMORY_BYTES = 1 << 30  # decoded uint8 sets up to 1 GiB are kept in memory (in_memory=null)


@dataclass
class Parts:
    """Where each split's images come from."""

    tree: ImageFiles  # every image of the training tree
    train_idx: torch.Tensor  # those that train
    held: dict[str, torch.Tensor]  # split -> the indices of `tree` held out for it
    given: dict[str, ImageFiles]  # split -> a folder of its own (val/, test/)


def scan(folder: Path, class_to_idx: dict[str, int], mode: str) -> ImageFiles:
    """Every image under folder/<class>/, classes numbered as in the training tree; PdpruneError
    when there is none."""
    present = {c: class_to_idx[c] for c in class_folders(folder) if c in class_to_idx}
    samples = make_dataset(str(folder), present, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise PdpruneError(f"{folder}: no images in its class folders (looked for "
                           f"{', '.join(IMG_EXTENSIONS)})")
    return ImageFiles(folder, samples, None, mode)


def holdout_counts(cfg: DictConfig, n: int, where: Path, held: tuple[str, ...]) -> list[int]:
    """How many of the training tree's n images each held-out split takes (at least one: an
    empty split cannot be evaluated).
    ImageNet's key is val_fraction; image_folder's are val_size and test_size."""
    counts = []
    for split in held:
        key = "val_fraction" if split == "val" and "val_fraction" in cfg else f"{split}_size"
        count = held_out(cfg[key], n, f"dataset.{key}", str(where))
        counts.append(max(1, count))
    if sum(counts) >= n:
        raise PdpruneError(f"dataset.root={cfg.root}: {n} images in {where} leave none to train "
                           f"on after holding out {' and '.join(held)}")
    return counts


def decode_all(files: ImageFiles, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of `files` through its transform, as one uint8 (N, C, H, W) tensor. A few
    hundred images decode faster here than worker processes start."""
    workers = 0 if len(files) < 512 else min(workers, os.cpu_count() or 1)
    loader = DataLoader(files, batch_size=256, num_workers=workers,
                        worker_init_fn=ignore_stop_signals)
    xs = []
    try:
        for x, _ in loader:
            xs.append(x)
    except PdpruneError as exc:  # from a worker: the message has its traceback
        raise PdpruneError(worker_message(exc)) from None
    return torch.cat(xs), torch.from_numpy(files.labels)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1], in chunks (no float copy of all)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in x.split(1024):
        part = part.double().div_(255).transpose(0, 1).flatten(1)
        total += part.sum(1)
        squares += part.square().sum(1)
    count = x.numel() // x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def build_image_folder(cfg: DictConfig, seed: int,
                       device: torch.device | None = None) -> DataBundle:
    device = device or torch.device("cpu")
    root = locate_dataset(cfg)
    tree = find_image_tree(cfg, root)
    size = image_size(cfg, tree)
    resize = resize_size(cfg, size)
    channels = int(cfg.get("channels", 3))
    mode = "L" if channels == 1 else "RGB"
    class_to_idx = {c: i for i, c in enumerate(tree.classes)}
    train_all = scan(tree.train, class_to_idx, mode)
    given = {split: scan(folder, class_to_idx, mode)
             for split, folder in (("val", tree.val), ("test", tree.test)) if folder is not None}
    held = tuple(split for split in ("val", "test") if split not in given)
    counts = holdout_counts(cfg, len(train_all), tree.train, held)
    train_idx, *held_idx = seeded_split(len(train_all), tuple(counts), cfg.split_seed)
    n_images = len(train_all) + sum(len(f) for f in given.values())
    in_memory = cfg.get("in_memory", False)  # imagenet's schema has no such key: from disk
    if in_memory is None:
        in_memory = n_images * channels * size * size <= IN_MEMORY_BYTES
    parts = Parts(train_all, train_idx, dict(zip(held, held_idx, strict=True)), given)
    serve = _in_memory if in_memory else _from_disk
    train, val, test = serve(cfg, seed, device, parts, size, resize)
    return DataBundle(name=cfg.name, train=train, val=val, test=test,
                      input_shape=(channels, size, size), num_classes=len(tree.classes))


def _from_disk(cfg, seed, device, parts: Parts, size: int, resize: int):
    evaluate = eval_transform(size, resize)
    splits = {split: parts.tree.subset(idx, evaluate) for split, idx in parts.held.items()}
    for split, files in parts.given.items():
        files.transform = evaluate
        splits[split] = files
    one_channel = parts.tree.mode == "L"
    common = {"num_workers": cfg.num_workers, "device": device,
              "mean": GRAY_MEAN if one_channel else MEAN, "std": GRAY_STD if one_channel else STD}
    augmented = train_transform(size, resize, cfg.augment)
    train = ImageLoader(parts.tree.subset(parts.train_idx, augmented), cfg.batch_size,
                        shuffle=True, drop_last=True, seed=seed, augment=cfg.augment, **common)
    val = ImageLoader(splits["val"], cfg.eval_batch_size, **common)
    test = ImageLoader(splits["test"], cfg.eval_batch_size, persistent=False, **common)  # once
    return train, val, test


def _in_memory(cfg, seed, device, parts: Parts, size: int, resize: int):
    evaluate = eval_transform(size, resize)
    parts.tree.transform = evaluate
    x, y = decode_all(parts.tree, cfg.num_workers)
    splits = {split: (x[idx], y[idx]) for split, idx in parts.held.items()}
    for split, files in parts.given.items():
        files.transform = evaluate
        splits[split] = decode_all(files, cfg.num_workers)
    train_x, train_y = x[parts.train_idx], y[parts.train_idx]
    mean, std = channel_stats(train_x)
    norm = normalizer(mean, std, scale=1 / 255, device=device)
    augment = RandomCropFlip(max(1, size // 8)) if cfg.augment else None  # CIFAR's 4 of 32

    def loader(xs, ys, batch_size, **kw) -> TensorLoader:
        return TensorLoader(xs, ys, batch_size, transform=norm, device=device, **kw)

    return (loader(train_x, train_y, cfg.batch_size, shuffle=True, drop_last=True, seed=seed,
                   augment=augment),
            loader(*splits["val"], cfg.eval_batch_size),
            loader(*splits["test"], cfg.eval_batch_size))
