"""What every dataset builder returns, and the in-memory loader the small datasets use."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

Batch = tuple[torch.Tensor, torch.Tensor]



def batch_count(samples: int, batch_size: int, drop_last: bool) -> int:
    """Batches in one pass: a ragged last batch counts unless it is dropped."""
    return samples // batch_size if drop_last else -(-samples // batch_size)

class Loader(Protocol):
    """What the trainer needs from a loader: (x, y) batches, batches per epoch, sample count,
    and (for the training loader) a state that makes a resumed run see the same batches."""

    def __iter__(self) -> Iterator[Batch]: ...
    def __len__(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class EpochState:
    """The randomness and position of a loader, in a form a checkpoint can hold.

    All of an epoch's randomness (order, augmentation parameters) is drawn from the loader's own
    CPU generator when the epoch starts. The state is the generator's state *before* that draw,
    plus the number of batches already handed out, so a state taken mid-epoch resumes with the
    very batches (and augmentations) the interrupted epoch would have produced next. Between
    epochs it is simply the generator's state and position 0.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_start: torch.Tensor | None = None  # generator state before this epoch's draw
        self._position = 0  # batches of the current epoch handed out
        self._resume_at = 0  # set by load_state_dict: batches of the next epoch to skip

    def _begin_epoch(self) -> int:
        """Record where this epoch's draw starts; returns the first batch to produce."""
        start, self._resume_at = self._resume_at, 0
        self._epoch_start = self.generator.get_state()
        self._position = start
        return start

    def _end_epoch(self) -> None:
        self._epoch_start, self._position = None, 0

    def state_dict(self) -> dict:
        if self._epoch_start is not None:  # mid-epoch: replay this epoch from its start
            return {"generator": self._epoch_start.clone(), "batch": self._position}
        # between epochs: where the next epoch starts (not 0 after a mid-epoch state was loaded)
        return {"generator": self.generator.get_state(), "batch": self._resume_at}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._resume_at = int(state.get("batch", 0))
        self._epoch_start, self._position = None, 0


class BatchAugment(Protocol):
    """A random augmentation of whole batches: parameters are drawn on the CPU for a whole epoch
    (an int64 (n, columns) tensor, one row per sample), then applied on the batch's device."""

    columns: int

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor: ...
    def __call__(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor: ...


class TensorLoader(EpochState):
    """Batches from whole tensors held in memory: no per-sample Python, no worker processes.

    `x` and `y` live on `device` when `resident` (the default: small datasets fit in GPU memory),
    so a batch is an index into memory already there. Otherwise they stay on the CPU and each
    batch moves there as it is (uint8 for images: 4x less than float). `augment` and then
    `transform` (e.g. uint8 -> normalised float) run on whole batches on `device`.

    Shuffling and augmentation draw from the loader's own CPU generator, once per epoch, and the
    draw reaches the device in one transfer, so training never waits on the host; see EpochState
    for how that makes a resumed run see the same batches as an uninterrupted one.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 augment: BatchAugment | None = None,
                 device: torch.device | str | None = None, resident: bool = True):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        super().__init__(seed)
        self.device = torch.device(device) if device is not None else x.device
        if resident:
            x, y = x.to(self.device), y.to(self.device)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        # dropping a ragged last batch only makes sense when there is more than one batch
        self.drop_last = drop_last and len(x) > batch_size
        self.transform = transform
        self.augment = augment

    def __len__(self) -> int:
        return batch_count(len(self.x), self.batch_size, self.drop_last)

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def _draw(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """This epoch's sample order (on the data's device) and augmentation parameters (on the
        compute device), drawn on the CPU in a fixed order and moved in one transfer."""
        n = len(self.x)
        parts = []
        if self.shuffle:
            parts.append(torch.randperm(n, generator=self.generator)[:, None])
        if self.augment is not None:
            parts.append(self.augment.draw(n, self.generator))
        if not parts:
            return None, None
        draws = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        moved = to_device(draws, self.device)
        order = None
        if self.shuffle:  # indices on the device the data is on
            order = (moved if self.x.device == self.device else draws)[:, 0].contiguous()
        params = moved[:, 1 if self.shuffle else 0:] if self.augment is not None else None
        return order, params

    def __iter__(self) -> Iterator[Batch]:
        start = self._begin_epoch()
        order, params = self._draw()
        n, size = len(self.x), self.batch_size
        try:
            for i in range(start, len(self)):
                sl = slice(i * size, min(n, (i + 1) * size))
                idx = order[sl] if order is not None else sl
                x, y = self.x[idx], self.y[idx]
                if x.device != self.device:
                    x, y = to_device(x, self.device), to_device(y, self.device)
                if params is not None:
                    x = self.augment(x, params[sl])
                if self.transform is not None:
                    x = self.transform(x)
                self._position = i + 1
                yield x, y
        finally:  # also when the consumer stops early (FirstBatches): the epoch is over
            self._end_epoch()


class FirstBatches:
    """The first `limit` batches of each epoch of a training loader (trainer.max_train_batches:
    quick runs and CI smoke runs on large datasets). Each epoch still draws its own order. An
    epoch resumed mid-way (the loader's state says which batch is next) ends at the same batch."""

    def __init__(self, loader: Loader, limit: int):
        self.loader, self.limit = loader, limit

    def __len__(self) -> int:
        return min(self.limit, len(self.loader))

    @property
    def num_samples(self) -> int:
        return self.loader.num_samples

    def __iter__(self) -> Iterator[Batch]:
        left = len(self) - int(self.loader.state_dict().get("batch", 0))
        batches = iter(self.loader)
        try:
            if left <= 0:  # still make this epoch's draw: the next epochs' depend on it
                next(batches, None)
            for _ in range(left):
                yield next(batches)
        finally:
            batches.close()

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device` without making the host wait: staged through pinned memory."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


@dataclass
class DataBundle:
    """Loaders plus the two facts a model needs to adapt to the data."""

    name: str
    train: Loader
    val: Loader
    test: Loader
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28)
    num_classes: int


def seeded_split(n: int, sizes: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """Index tensors for disjoint parts of range(n) of the given sizes (the rest goes first)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    rest = n - sum(sizes)
    if rest < 0:
        raise ValueError(f"cannot take {sum(sizes)} samples out of {n}")
    cuts = [0, rest]
    for size in sizes:
        cuts.append(cuts[-1] + size)
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def normalizer(mean: float | Sequence[float], std: float | Sequence[float], scale: float = 1.0,
               device: torch.device | str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch transform: x * scale, then (x - mean) / std, as float32 on x's device; `mean` and
    `std` are numbers or one per channel (dimension 1)."""
    if not isinstance(mean, int | float):
        mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    if not isinstance(std, int | float):
        std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return (x.float() * scale - mean) / std

    return transform


def one_line(exc: BaseException) -> str:
    """An exception as `Type: first line of its message`, for one-line errors."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
