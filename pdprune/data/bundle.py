"""What every dataset builder returns, and the in-memory loader the small datasets use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


class TensorLoader:
    """Batches from whole tensors held in memory: no per-sample Python, no worker processes.

    Shuffling draws from the loader's own generator, whose state goes into checkpoints so a
    resumed run sees the same batches as an uninterrupted one. `transform` runs on whole
    batches (e.g. uint8 -> normalised float).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        # dropping a ragged last batch only makes sense when there is more than one batch
        self.drop_last = drop_last and len(x) > batch_size
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            idx = order[sl] if order is not None else sl
            x = self.x[idx]
            yield (self.transform(x) if self.transform else x), self.y[idx]

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass
class DataBundle:
    """Loaders plus the two facts a model needs to adapt to the data."""

    name: str
    train: TensorLoader
    val: TensorLoader
    test: TensorLoader
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


def normalizer(mean: float, std: float,
               scale: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch transform: x * scale, then (x - mean) / std, as float32."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        return (x.float() * scale - mean) / std

    return transform
