"""Which folders of an image tree (torchvision ImageFolder layout) hold which split, found
without reading the images: the start-up checks use it (so no torch or numpy here), and so does
the builder (image_folder.py), so both agree.

    root/train/<class>/*, root/val/<class>/*, root/test/<class>/*   train, val, test
    root/train/<class>/*, root/val/<class>/*                         val/ is the test set (as
                                                                     ImageNet's); val is held
                                                                     out of train/
    root/<class>/*  (or root/train/ alone)                           val and test held out

dataset=imagenet needs train/ and val/. Classes are the sorted folder names of the training
tree; val/ and test/ may hold fewer of them, not others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError, PdpruneError

# torchvision.datasets.folder.IMG_EXTENSIONS (spelt out: importing it loads torch)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
AUTO_SIZE_MAX = 224  # dataset.image_size=null takes the first image's size, at most this
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageTree:
    train: Path  # the tree the training images (and any held-out split) come from
    val: Path | None  # a folder for the validation set; None: held out of `train`
    test: Path | None  # a folder for the test set; None: held out of `train`
    classes: tuple[str, ...]  # sorted class folder names of `train`


def class_folders(folder: Path) -> list[str]:
    """The sorted names of the sub-folders of `folder` (ImageFolder's classes)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def find_image_tree(cfg: DictConfig, root: Path) -> ImageTree:
    """The layout under root (see the module's docstring); ConfigError on dataset.root naming
    what is missing."""
    shown = cfg.root or str(root)
    present = {s for s in SPLITS if (root / s).is_dir()}
    if cfg.name == "imagenet":
        expected = ("expected ImageFolder trees train/<class>/<images> and val/<class>/<images> "
                    f"under {root}")
        for split in ("train", "val"):
            if split not in present:
                raise ConfigError("dataset.root", shown, f"no {split}/ folder ({expected})")
        present.discard("test")  # ImageNet's test set is val/
    else:
        expected = (f"expected <class>/<images> under {root}, or train/<class>/<images> with "
                    "val/ and test/ optional")
        if present and "train" not in present:
            raise ConfigError("dataset.root", shown, f"has {'/ and '.join(sorted(present))}/ but "
                              f"no train/ folder ({expected})")
    train = root / "train" if "train" in present else root
    classes = {}
    for split, folder in (("train", train), *((s, root / s) for s in ("val", "test")
                                               if s in present)):
        classes[split] = class_folders(folder)
        if not classes[split]:
            where = "" if folder == root else f"{split}/ "
            raise ConfigError("dataset.root", shown,
                              f"{where}has no class sub-folders ({expected})")
        extra = sorted(set(classes[split]) - set(classes["train"]))
        if extra:
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            raise ConfigError("dataset.root", shown, f"{split}/ has classes that train/ lacks: "
                              f"{', '.join(extra[:3])}{more}")
    if first_image(train, classes["train"]) is None:
        raise ConfigError("dataset.root", shown, f"no images in the class folders of {train} "
                          f"(looked for {', '.join(IMG_EXTENSIONS)})")
    both = "val" in present and "test" in present
    return ImageTree(train=train, val=root / "val" if both else None,
                     test=root / "test" if "test" in present else
                     (root / "val" if "val" in present else None),
                     classes=tuple(classes["train"]))


def is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def first_image(folder: Path, classes: list[str] | tuple[str, ...]) -> Path | None:
    """The first image (in sorted order) under folder/<class>/, or None; stops at the first
    found, so a large tree costs a few directory listings."""
    for name in classes:
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames.sort()
            found = sorted(f for f in filenames if is_image(f))
            if found:
                return Path(dirpath) / found[0]
    return None


def image_size(cfg: DictConfig, tree: ImageTree) -> int:
    """dataset.image_size, or (null) the shorter side of the first training image, at most
    AUTO_SIZE_MAX: one image's header is read."""
    if cfg.get("image_size") is not None:
        return int(cfg.image_size)
    from PIL import Image, UnidentifiedImageError

    path = first_image(tree.train, tree.classes)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError) as exc:
        raise PdpruneError(f"{path}: cannot read this image ({type(exc).__name__}: {exc})") \
            from None
    return min(width, height, AUTO_SIZE_MAX)


def resize_size(cfg: DictConfig, size: int) -> int:
    """dataset.resize_size (the shorter side before the centre crop), or the crop size."""
    return int(cfg.resize_size) if cfg.get("resize_size") is not None else size
