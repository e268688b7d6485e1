"""Where a dataset's files are, checked at start-up so a missing file is a one-line error."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_file(root: Path, stem: str) -> Path | None:
    """The IDX file `stem`, gzipped or plain, under root; None when neither exists."""
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def locate_dataset(cfg: DictConfig) -> Path | None:
    """The folder a dataset reads from (None for in-memory ones); ConfigError if it is missing."""
    if cfg.name != "fashion_mnist":
        return None
    root = Path(cfg.root).expanduser() if cfg.root else FASHION_MNIST_DEFAULT_ROOT
    key, shown = "dataset.root", cfg.root if cfg.root else f"null (looked in {root})"
    if not root.is_dir():
        hint = "" if cfg.root else "; install Debian's dataset-fashion-mnist or set dataset.root"
        raise ConfigError(key, shown, f"no such directory{hint}")
    missing = [stem for stem in FASHION_MNIST_FILES if idx_file(root, stem) is None]
    if missing:
        raise ConfigError(key, shown, f"missing {', '.join(s + '[.gz]' for s in missing)}")
    return root
