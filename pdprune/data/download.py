"""dataset.download=true: an opt-in fetch with torchvision's downloader, for users with a network.
Nothing in pdprune downloads unless asked."""

from __future__ import annotations

from pathlib import Path

from ..errors import PdpruneError
from .bundle import one_line

TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10",
                       "cifar100": "CIFAR100"}


def download(name: str, root: Path) -> None:
    """Fetch dataset `name` into root (md5-checked; skipped when already there)."""
    import torchvision.datasets as tvd

    dataset = getattr(tvd, TORCHVISION_CLASSES[name])
    try:
        dataset(str(root), train=False, download=True)
    except Exception as exc:  # no network, a bad mirror, a full disk: one line
        raise PdpruneError(f"dataset.download=true: could not fetch {name} into {root} "
                           f"({one_line(exc)})") from None
