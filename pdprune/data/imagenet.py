"""ImageNet-style ImageFolder trees: root/train/<class>/<images> and root/val/<class>/<images>.

Training images: RandomResizedCrop(image_size) + horizontal flip; evaluation images:
Resize(resize_size) + CenterCrop(image_size). Decoding and cropping run in DataLoader worker
processes and produce uint8 tensors; ToTensor's scaling and Normalize run on whole batches on the
training device (the same arithmetic, a quarter of the bytes through pinned memory).

val = a seeded val_fraction (at least one image) of train/, with the evaluation transforms;
test = root/val, the usual stand-in for ImageNet's unlabelled test set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ..errors import ConfigError, PdpruneError
from ..signals import ignore_stop_signals
from .bundle import Batch, DataBundle, EpochState, normalizer, one_line, seeded_split, to_device
from .locate import class_folders, locate_dataset

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ERROR_PREFIX = f"{PdpruneError.__module__}.{PdpruneError.__name__}: "


class ImageFiles(Dataset):
    """Images on disk with their labels, decoded to RGB and transformed to uint8 (C, H, W).

    An item is an index, or (index, seed) to run the random transforms under that seed: the
    augmentation of a sample then depends only on the loader's draw, not on which worker
    process decodes it or on the global RNG.
    """

    def __init__(self, root: Path, samples: list[tuple[str, int]], transform):
        self.root = str(root)
        # compact arrays rather than a list of tuples: workers share them without copying
        self.paths = np.array([os.path.relpath(p, self.root).encode() for p, _ in samples])
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor, transform) -> ImageFiles:
        part = ImageFiles.__new__(ImageFiles)
        idx = indices.numpy()
        part.root, part.paths, part.labels = self.root, self.paths[idx], self.labels[idx]
        part.transform = transform
        return part

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        path = os.path.join(self.root, self.paths[index].decode())
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise PdpruneError(f"{path}: cannot read this image ({one_line(exc)})") from None
        if seed is None:
            x = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x = self.transform(img)
        return x, int(self.labels[index])


class _EpochSampler(Sampler):
    """Yields whatever its loader put in `items` for this epoch (indices or (index, seed))."""

    def __init__(self):
        self.items: list = []

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class ImageLoader(EpochState):
    """A torch DataLoader (worker processes, pinned memory, persistent workers) whose order and
    augmentation come from the loader's own CPU generator, drawn once per epoch like
    TensorLoader's: the state_dict is that generator's state (and the position mid-epoch).

    Shuffled epochs are a permutation of the samples (torch.randperm on the generator, as
    RandomSampler draws it) paired with one seed per sample for its random transforms.
    """

    def __init__(self, dataset: ImageFiles, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, augment: bool = False,
                 num_workers: int = 0, persistent: bool = True,
                 device: torch.device | str = "cpu", mean=MEAN, std=STD):
        super().__init__(seed)
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.augment = augment
        self.drop_last = drop_last and len(dataset) > batch_size
        self.device = torch.device(device)
        self.normalize = normalizer(mean, std, scale=1 / 255, device=self.device)
        self.sampler = _EpochSampler()
        workers = min(num_workers, os.cpu_count() or 1)
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, drop_last=self.drop_last,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and workers > 0,
            # only seeds the workers' own RNGs, which the transforms do not use (see ImageFiles)
            generator=torch.Generator().manual_seed(seed),
            worker_init_fn=ignore_stop_signals)  # SLURM signals every process: the main one acts

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def _items(self) -> list:
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        order = torch.randperm(n, generator=self.generator)
        if not self.augment:
            return order.tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=self.generator)
        return list(zip(order.tolist(), seeds.tolist(), strict=True))

    def __iter__(self) -> Iterator[Batch]:
        start = self._begin_epoch()
        self.sampler.items = self._items()[start * self.batch_size:]
        if not self.sampler.items:
            self._end_epoch()
            return
        batches = iter(self.loader)
        try:
            while True:
                try:
                    x, y = next(batches)
                except StopIteration:
                    break
                except PdpruneError as exc:  # from a worker: the message has its traceback
                    raise PdpruneError(worker_message(exc)) from None
                self._position += 1
                x, y = to_device(x, self.device), to_device(y, self.device)
                yield self.normalize(x), y
        finally:  # also when the consumer stops early (FirstBatches): the epoch is over
            self._end_epoch()


def worker_message(exc: Exception) -> str:
    """The one-line message of a PdpruneError re-raised from a DataLoader worker."""
    lines = str(exc).splitlines()
    found = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    return found[-1] if found else (lines[0] if lines else type(exc).__name__)


def train_transform(cfg: DictConfig):
    if not cfg.augment:
        return eval_transform(cfg)
    return T.Compose([T.RandomResizedCrop(cfg.image_size), T.RandomHorizontalFlip(),
                      T.PILToTensor()])


def eval_transform(cfg: DictConfig):
    return T.Compose([T.Resize(cfg.resize_size), T.CenterCrop(cfg.image_size), T.PILToTensor()])


def scan(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image under folder/<class>/, classes numbered as in train/."""
    present = {c: class_to_idx[c] for c in class_folders(folder) if c in class_to_idx}
    return make_dataset(str(folder), present, extensions=IMG_EXTENSIONS, allow_empty=True)


def build_imagenet(cfg: DictConfig, seed: int, device: torch.device | None = None) -> DataBundle:
    device = device or torch.device("cpu")
    root = locate_dataset(cfg)
    classes = class_folders(root / "train")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    train_all = ImageFiles(root / "train", scan(root / "train", class_to_idx), None)
    test = ImageFiles(root / "val", scan(root / "val", class_to_idx), eval_transform(cfg))
    for split, files in (("train", train_all), ("val", test)):
        if len(files) == 0:
            raise PdpruneError(f"{root / split}: no images in its class folders (looked for "
                               f"{', '.join(IMG_EXTENSIONS)})")
    n = len(train_all)
    n_val = max(1, round(cfg.val_fraction * n))
    if n_val >= n:
        raise ConfigError("dataset.val_fraction", cfg.val_fraction,
                          f"leaves no training images ({n} in {root / 'train'})")
    train_idx, val_idx = seeded_split(n, (n_val,), cfg.split_seed)
    common = {"num_workers": cfg.num_workers, "device": device}
    return DataBundle(
        name="imagenet",
        train=ImageLoader(train_all.subset(train_idx, train_transform(cfg)), cfg.batch_size,
                          shuffle=True, drop_last=True, seed=seed, augment=cfg.augment,
                          **common),
        val=ImageLoader(train_all.subset(val_idx, eval_transform(cfg)), cfg.eval_batch_size,
                        **common),
        test=ImageLoader(test, cfg.eval_batch_size, persistent=False, **common),  # used once
        input_shape=(3, cfg.image_size, cfg.image_size),
        num_classes=len(classes),
    )
