"""The user's own data (issue 20): image folders, a CSV / JSONL of texts, a custom Dataset
target, sizes taken from the data (held-out counts, class counts), and one-line errors for bad
folders and files, raised by the start-up checks before any run folder exists."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from pdprune.config.preflight import check
from pdprune.data import build_data
from pdprune.data.bundle import seeded_split
from pdprune.data.locate import nominal_input
from pdprune.errors import PdpruneError
from pdprune.run import run

from .fakedata import idx_bytes

CLASSES = ("ant", "bee", "cat")
# dense: a pruned run with no dense epoch would also time a dense calibration run (seconds)
QUICK = ("trainer.epochs=1", "trainer.max_train_batches=2", "trainer.progress=false",
         "trainer.threads=1", "method=dense", "sparsity=0")


def write_pngs(root: Path, per_class: int = 6, mode: str = "RGB",
               seed: int = 0) -> list[tuple[Path, int]]:
    """root/<class>/*.png of random pixels, every image its own size (about 20 px); returns
    (path, class index) in ImageFolder's order (sorted classes, sorted files)."""
    rng = np.random.default_rng(seed)
    written = []
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = 18 + int(rng.integers(0, 10)), 18 + int(rng.integers(0, 10))
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            path = root / name / f"{i:02d}.png"
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
            written.append((path, label))
    return written


def reference(path: Path, size: int, mode: str = "RGB") -> torch.Tensor:
    """What image_folder makes of one file: Resize + CenterCrop, uint8."""
    with Image.open(path) as img:
        return T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])(img.convert(mode))


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(PdpruneError) as err:
        check(argv)
    assert "\n" not in str(err.value)
    return str(err.value)


# ---------------------------------------------------------------- image_folder


def test_one_tree_is_split_by_seed_and_decoded_once(make_cfg, tmp_path):
    written = write_pngs(tmp_path / "imgs", per_class=10)
    cfg = make_cfg("dataset=image_folder", f"dataset.root={tmp_path / 'imgs'}",
                   "dataset.image_size=16", "dataset.val_size=0.2", "dataset.test_size=3",
                   "dataset.num_workers=0").dataset
    data = build_data(cfg, seed=0)
    assert (data.input_shape, data.num_classes) == ((3, 16, 16), 3)
    # 30 images: 6 (20%) held out for val, 3 for test, by the split seed
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (21, 6, 3)
    assert type(data.test).__name__ == "TensorLoader" and data.test.x.dtype == torch.uint8
    _, val_idx, test_idx = seeded_split(30, (6, 3), 0)
    for idx, loader in ((val_idx, data.val), (test_idx, data.test)):
        want = torch.stack([reference(written[i][0], 16) for i in idx.tolist()])
        assert torch.equal(loader.x, want)
        assert loader.y.tolist() == [written[i][1] for i in idx.tolist()]
    x, y = next(iter(data.test))  # normalised by the training images' own statistics
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    train = data.train.x.double() / 255
    mean = train.mean(dim=(0, 2, 3))
    torch.testing.assert_close(x.double().mean(dim=(0, 2, 3)) * train.std(dim=(0, 2, 3)) + mean,
                               (data.test.x.double() / 255).mean(dim=(0, 2, 3)),
                               rtol=0, atol=1e-3)


def test_split_folders_grayscale_and_first_image_size(make_cfg, tmp_path):
    root = tmp_path / "tree"
    for split, count in (("train", 4), ("val", 2), ("test", 1)):
        write_pngs(root / split, per_class=count, mode="L", seed=len(split))
    first = Image.open(root / "train" / "ant" / "00.png")
    size = min(first.size)
    argv = ("dataset=image_folder", f"dataset.root={root}", "dataset.channels=1")
    data = build_data(make_cfg(*argv).dataset, seed=0)
    assert (data.input_shape, data.num_classes) == ((1, size, size), 3)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (12, 6, 3)
    assert nominal_input(make_cfg(*argv).dataset) == ((1, size, size), 3)
    # without test/: val/ is the test set and val is held out of train/ (ImageNet's layout)
    for path in sorted((root / "test").rglob("*.png")):
        path.unlink()
    for name in CLASSES:
        (root / "test" / name).rmdir()
    (root / "test").rmdir()
    data = build_data(make_cfg(*argv, "dataset.val_size=2").dataset, seed=0)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (10, 2, 6)


def test_from_disk_gives_the_same_images(make_cfg, tmp_path):
    written = write_pngs(tmp_path / "imgs", per_class=3)
    argv = ("dataset=image_folder", f"dataset.root={tmp_path / 'imgs'}", "dataset.image_size=12",
            "dataset.num_workers=0", "dataset.val_size=1", "dataset.test_size=2")
    disk = build_data(make_cfg(*argv, "dataset.in_memory=false").dataset, seed=0)
    memory = build_data(make_cfg(*argv).dataset, seed=0)
    assert type(disk.test).__name__ == "ImageLoader"
    paths = [str(tmp_path / "imgs" / p.decode()) for p in disk.test.dataset.paths.tolist()]
    want = torch.stack([reference(Path(p), 12) for p in paths])
    assert torch.equal(want, memory.test.x)
    assert disk.test.dataset.labels.tolist() == memory.test.y.tolist() == \
        [dict(written)[Path(p)] for p in paths]


def test_prune_train_on_a_folder_of_pngs(make_cfg, tmp_path):
    write_pngs(tmp_path / "imgs", per_class=8)
    summary = run(make_cfg("dataset=image_folder", f"dataset.root={tmp_path / 'imgs'}",
                           "dataset.image_size=16", "dataset.batch_size=8", "model=resnet20",
                           "model.width=0.25", *QUICK), tmp_path / "run")
    assert summary["num_classes"] == 3 and summary["dataset"] == "image_folder"
    assert summary["input_shape"] == [3, 16, 16]
    assert (tmp_path / "run" / "model.safetensors").is_file()


# ---------------------------------------------------------------- text_csv


def write_texts(path: Path, rows: list[tuple[str, object]], text: str = "text",
                label: str = "label") -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({text: t, label: y}) + "\n" for t, y in rows))
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", text, label])
        writer.writerows((i, t, y) for i, (t, y) in enumerate(rows))


def texts(n: int, labels: tuple) -> list[tuple[str, object]]:
    words = ("good", "bad", "fine", "dull", "great", "poor")
    return [(" ".join(words[(i * k) % 6] for k in range(1, 6)), labels[i % len(labels)])
            for i in range(n)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_file_labels_and_split(make_cfg, tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    labels = ("pos", "neg", "meh") if suffix == ".csv" else (2, 0, 1, 0)
    write_texts(path, texts(40, labels), text="sentence")
    cfg = make_cfg("dataset=text_csv", f"dataset.path={path}", "dataset.text_column=sentence",
                   "model=bert_tiny", f"dataset.cache_dir={tmp_path / 'cache'}",
                   "dataset.max_length=16")
    data = build_data(cfg.dataset, seed=0, model_cfg=cfg.model)
    assert data.num_classes == 3 and data.input_shape == (16,)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (32, 4, 4)
    ys = torch.cat([data.train.y, data.val.y, data.test.y]).sort().values
    # classes sorted (integers by value): meh, neg, pos = 0, 1, 2 (pos, neg, meh, pos, ...: 14
    # pos); integer labels 0, 1, 2 keep their numbers (2, 0, 1, 0, ...: 20 zeros)
    counts = [13, 13, 14] if suffix == ".csv" else [20, 10, 10]
    assert torch.bincount(ys).tolist() == counts


def test_prune_train_on_a_csv_with_bert_tiny(make_cfg, tmp_path):
    path = tmp_path / "t.csv"
    write_texts(path, texts(48, ("yes", "no")))
    summary = run(make_cfg("dataset=text_csv", f"dataset.path={path}", "model=bert_tiny",
                           f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.batch_size=8",
                           "dataset.max_length=16", *QUICK), tmp_path / "run")
    assert summary["num_classes"] == 2 and summary["dataset"] == "text_csv"
    assert summary["input_shape"] == [16]


def test_text_file_errors_are_one_line(tmp_path):
    path = tmp_path / "t.csv"
    write_texts(path, texts(20, ("a", "b")), text="body")
    base = ["dataset=text_csv", "model=bert_tiny"]
    assert one_line_error(base) == ("dataset.path=null: dataset=text_csv needs a CSV or JSONL "
                                    "file with text and label columns")
    assert one_line_error([*base, f"dataset.path={tmp_path}/no.csv"]) == (
        f"dataset.path={tmp_path}/no.csv: no such file")
    assert one_line_error([*base, f"dataset.path={path}"]) == (
        f"dataset.text_column=text: no such column in {path} (columns: id, body, label)")
    write_texts(path, texts(20, ("a",)))
    assert one_line_error([*base, f"dataset.path={path}"]) == (
        f"dataset.label_column=label: has one distinct label ('a') in {path}: a classifier needs "
        "two classes at least")
    assert one_line_error(["dataset=text_csv", f"dataset.path={path}"]).startswith(
        "model=mlp: dataset=text_csv needs a text model")


# ---------------------------------------------------------------- custom


MODULE = '''
import torch
from torch.utils.data import Dataset, TensorDataset


def pixels(n=50, classes=4):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8),
                         torch.arange(n) % classes)


def splits():
    return {"train": pixels(30), "validation": pixels(5), "test": pixels(7)}


def pair():
    return pixels(30), pixels(9)


class Broken(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.zeros(2)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_data_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_data_mod"
    sys.modules.pop("user_data_mod", None)


def test_custom_target_shapes_classes_and_splits(make_cfg, user_module):
    def build(*extra):
        return build_data(make_cfg("dataset=custom", *extra).dataset, seed=0)

    data = build(f"dataset._target_={user_module}.pixels", "dataset.n=60", "dataset.classes=5",
                 "dataset.val_size=0.1", "dataset.test_size=12")
    assert (data.input_shape, data.num_classes) == ((1, 6, 6), 5)
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (42, 6, 12)
    x, _ = next(iter(data.test))  # uint8 inputs scaled to [0, 1] per batch
    assert x.dtype == torch.float32 and torch.equal(x, data.test.x[:len(x)].float() / 255)
    data = build(f"dataset._target_={user_module}.splits")
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (30, 5, 7)
    data = build(f"dataset._target_={user_module}.pair")  # (train, test): val held out
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (27, 3, 9)
    with pytest.raises(PdpruneError) as err:
        build(f"dataset._target_={user_module}.Broken")
    assert str(err.value) == (f"dataset._target_={user_module}.Broken (train): sample 0 is a "
                              "Tensor, expected an (input, label) pair")


def test_custom_target_runs_and_bad_targets_are_one_line(make_cfg, tmp_path, user_module):
    summary = run(make_cfg("dataset=custom", f"dataset._target_={user_module}.pixels",
                           "model=mlp", "model.hidden=[16]", *QUICK), tmp_path / "run")
    assert summary["num_classes"] == 4 and summary["input_shape"] == [1, 6, 6]
    assert one_line_error(["dataset=custom", "dataset._target_=no_such_mod.fn"]) == (
        "dataset._target_=no_such_mod.fn: cannot import it (ModuleNotFoundError: No module "
        "named 'no_such_mod')")
    assert one_line_error(["dataset=custom", f"dataset._target_={user_module}.torch"]) == (
        f"dataset._target_={user_module}.torch: is a module, not a callable")


# ---------------------------------------------------------------- sizes from the data


def write_idx_set(root: Path, n_train: int, n_test: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        (root / f"{stem}-images-idx3-ubyte").write_bytes(
            idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (root / f"{stem}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n) % classes))


def test_4000_idx_images_hold_out_a_capped_val_set_and_count_classes(make_cfg, tmp_path):
    """The user's MNIST-format folder of 4,000 images and 4 classes: dataset.val_size=5000
    (made for MNIST's 60k) is capped at a tenth, the class count comes from the labels."""
    write_idx_set(tmp_path, 4000, 100, classes=4)
    argv = ["dataset=mnist", f"dataset.root={tmp_path}", "model=lenet"]
    assert check(argv) == 1
    assert nominal_input(make_cfg(*argv).dataset) == ((1, 28, 28), 4)
    data = build_data(make_cfg(*argv).dataset, seed=0)
    assert data.num_classes == 4
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (3600, 400,
                                                                                     100)
    data = build_data(make_cfg(*argv, "dataset.val_size=0.25").dataset, seed=0)
    assert (data.train.num_samples, data.val.num_samples) == (3000, 1000)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(100, 4)))
    assert one_line_error(argv) == (f"{tmp_path / 't10k-labels-idx1-ubyte'}: label 4 out of "
                                    "range for 4 classes")


def test_bad_folders_are_one_line_before_anything_is_built(tmp_path):
    base = ["dataset=image_folder"]
    assert one_line_error(base).startswith("dataset.root=null: image_folder has no default folder")
    assert one_line_error([*base, f"dataset.root={tmp_path}/none"]) == (
        f"dataset.root={tmp_path}/none: no such directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_line_error([*base, f"dataset.root={empty}"]).startswith(
        f"dataset.root={empty}: has no class sub-folders (expected <class>/<images> under")
    (empty / "ant").mkdir()
    (empty / "ant" / "notes.txt").write_text("no images here")
    assert one_line_error([*base, f"dataset.root={empty}"]).startswith(
        f"dataset.root={empty}: no images in the class folders of {empty} (looked for .jpg")
    (empty / "val" / "ant").mkdir(parents=True)
    assert one_line_error([*base, f"dataset.root={empty}"]).startswith(
        f"dataset.root={empty}: has val/ but no train/ folder")
    assert one_line_error(["dataset=mnist", f"dataset.root={tmp_path}",
                           "dataset.val_size=-2"]) == (
        "dataset.val_size=-2: must be >= 0 (a fraction < 1 or a count)")


@pytest.mark.slow
def test_prune_train_prints_a_bad_folder_once_and_makes_no_run_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    proc = subprocess.run([sys.executable, "-m", "pdprune", "dataset=image_folder",
                           f"dataset.root={tmp_path / 'imgs'}", "model=resnet20"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [f"prune-train: error: dataset.root={tmp_path / 'imgs'}: has no class "
                     f"sub-folders (expected <class>/<images> under {tmp_path / 'imgs'}, or "
                     "train/<class>/<images> with val/ and test/ optional)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]
