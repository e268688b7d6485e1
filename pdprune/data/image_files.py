"""Images decoded from files by DataLoader worker processes: the loader for image trees too
large to decode once and keep in memory (image_folder.py decides; ImageNet always comes here).

Decoding and the PIL transforms (train: RandomResizedCrop + flip; eval: Resize + CenterCrop) run
in the workers and produce uint8 tensors; ToTensor's scaling and Normalize run on whole batches
on the training device (the same arithmetic, a quarter of the bytes through pinned memory).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from ..errors import PdpruneError
from ..signals import ignore_stop_signals
from .bundle import Batch, EpochState, batch_count, normalizer, one_line, to_device

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, per RGB channel
GRAY_MEAN, GRAY_STD = 0.449, 0.226  # their averages, for one-channel images
ERROR_PREFIX = f"{PdpruneError.__module__}.{PdpruneError.__name__}: "


class ImageFiles(Dataset):
    """Images on disk with their labels, decoded to `mode` (PIL's "RGB" or "L") and transformed
    to uint8 (C, H, W).

    An item is an index, or (index, seed) to run the random transforms under that seed: the
    augmentation of a sample then depends only on the loader's draw, not on which worker
    process decodes it or on the global RNG.
    """

    def __init__(self, root: Path, samples: list[tuple[str, int]], transform,
                 mode: str = "RGB"):
        self.root, self.mode = str(root), mode
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
        part.mode = self.mode
        part.transform = transform
        return part

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        path = os.path.join(self.root, self.paths[index].decode())
        try:
            with Image.open(path) as img:
                img = img.convert(self.mode)
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
        return batch_count(len(self.dataset), self.batch_size, self.drop_last)

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


def train_transform(size: int, resize: int, augment: bool):
    if not augment:
        return eval_transform(size, resize)
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])


def eval_transform(size: int, resize: int):
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.PILToTensor()])
