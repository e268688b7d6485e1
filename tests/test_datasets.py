"""CIFAR, MNIST and ImageFolder datasets from tiny files in the real formats (tests/fakedata.py),
through the same code path prune-train uses; the batch augmentation checked pixel for pixel;
deterministic, resumable loaders; one-line errors for missing and malformed files."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from pdprune.config.preflight import check
from pdprune.data import build_data
from pdprune.data.augment import RandomCropFlip, crop_flip
from pdprune.data.bundle import TensorLoader, normalizer
from pdprune.data.cifar import STATS
from pdprune.data.locate import download_root
from pdprune.errors import PdpruneError

from .fakedata import write_cifar, write_idx, write_imagefolder

# ---------------------------------------------------------------- helpers


def batches(loader, n=None):
    """The next n (or all) batches of a fresh epoch, as CPU tensors."""
    out = []
    for i, (x, y) in enumerate(loader):
        if n is not None and i == n:
            break
        out.append((x.cpu(), y.cpu()))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def window(image: torch.Tensor, top: int, left: int, flip: bool, pad: int) -> torch.Tensor:
    """The reference: one image, padded with zeros, cut, mirrored, by plain slicing."""
    _, h, w = image.shape
    padded = torch.zeros(image.shape[0], h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad:pad + h, pad:pad + w] = image
    out = padded[:, top:top + h, left:left + w]
    return out.flip(-1) if flip else out


@pytest.fixture
def cifar10(tmp_path):
    return tmp_path, write_cifar(tmp_path, "cifar10", per_batch=8, n_test=10)


def cifar_cfg(make_cfg, root, *extra, name="cifar10"):
    return make_cfg(f"dataset={name}", f"dataset.root={root}", "dataset.val_size=8",
                    "dataset.batch_size=6", "dataset.eval_batch_size=4", *extra).dataset


def imagenet_cfg(make_cfg, root, *extra):
    return make_cfg("dataset=imagenet", f"dataset.root={root}", "dataset.image_size=24",
                    "dataset.resize_size=28", "dataset.num_workers=0", "dataset.batch_size=4",
                    "dataset.eval_batch_size=5", "dataset.val_fraction=0.2", *extra).dataset


# ---------------------------------------------------------------- augmentation


@pytest.mark.parametrize(("shape", "pad"), [((3, 32, 32), 4), ((2, 5, 7), 3)])
def test_crop_flip_is_exactly_the_padded_window(shape, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, *shape), generator=g, dtype=torch.uint8)
    aug = RandomCropFlip(pad)
    params = aug.draw(len(x), torch.Generator().manual_seed(1))
    out = aug(x, params)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i, (top, left, flip) in enumerate(params.tolist()):
        assert 0 <= top <= 2 * pad and 0 <= left <= 2 * pad and flip in (0, 1)
        assert torch.equal(out[i], window(x[i], top, left, bool(flip), pad)), i
        # and the same as torchvision's pad + crop + hflip on that image
        ref = TF.crop(TF.pad(x[i], [pad]), top, left, shape[1], shape[2])
        assert torch.equal(out[i], TF.hflip(ref) if flip else ref)
    # 64 draws cover both flips and both extreme offsets (the draw is not degenerate)
    assert set(params[:, 2].tolist()) == {0, 1}
    assert {0, 2 * pad} <= set(params[:, :2].flatten().tolist())


def test_crop_flip_by_hand():
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    one = torch.ones(1, dtype=torch.long)
    out = crop_flip(x, 0 * one, 2 * one, torch.tensor([False]), padding=1)
    assert out[0, 0].tolist() == [[0, 0, 0], [2, 3, 0], [5, 6, 0]]
    out = crop_flip(x, 2 * one, 0 * one, torch.tensor([True]), padding=1)
    assert out[0, 0].tolist() == [[5, 4, 0], [8, 7, 0], [0, 0, 0]]


def test_loader_batches_are_the_drawn_order_and_windows():
    """Epoch randomness comes from the loader's generator, drawn once per epoch in a fixed order:
    the permutation, then (top, left, flip) for every position."""
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(20)
    aug = RandomCropFlip(2)
    norm = normalizer((10.0, 20.0, 30.0), (2.0, 3.0, 4.0))
    loader = TensorLoader(x, y, 6, shuffle=True, drop_last=True, seed=7, augment=aug,
                          transform=norm)
    g = torch.Generator().manual_seed(7)
    for _epoch in range(2):
        perm = torch.randperm(20, generator=g)
        params = aug.draw(20, g)
        got = batches(loader)
        assert len(got) == len(loader) == 3
        for b, (xb, yb) in enumerate(got):
            sl = slice(6 * b, 6 * b + 6)
            assert torch.equal(yb, perm[sl])
            want = torch.stack([window(x[j], *params[6 * b + k, :2].tolist(),
                                       bool(params[6 * b + k, 2]), 2)
                                for k, j in enumerate(perm[sl].tolist())])
            mean = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
            std = torch.tensor([2.0, 3.0, 4.0]).view(1, 3, 1, 1)
            torch.testing.assert_close(xb, (want.float() - mean) / std)


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_shapes_labels_split_and_normalisation(make_cfg, tmp_path, name):
    written = write_cifar(tmp_path, name, per_batch=8, n_test=10)
    data = build_data(cifar_cfg(make_cfg, tmp_path, name=name), seed=0)
    classes = 10 if name == "cifar10" else 100
    assert data.name == name and data.input_shape == (3, 32, 32) and data.num_classes == classes
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (32, 8, 10)
    assert len(data.train) == 5 and len(data.val) == 2 and len(data.test) == 3
    x, y = next(iter(data.train))
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    # the test set in file order, unaugmented: exactly (pixel / 255 - mean) / std per channel,
    # with channel c the c-th 1024-value plane of the row
    xs, ys = map(torch.cat, zip(*batches(data.test), strict=True))
    assert ys.tolist() == written["test_y"].tolist()  # fine labels for CIFAR-100
    raw = torch.from_numpy(written["test_x"]).view(10, 3, 32, 32).float()
    assert torch.equal(raw[3, 1], torch.from_numpy(written["test_x"][3, 1024:2048]).view(32, 32)
                       .float())
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in STATS[name])
    torch.testing.assert_close(xs, (raw / 255 - mean) / std)
    # train + val are the 40 training images, disjoint
    rows = {bytes(r) for r in written["train_x"]}
    held = [bytes(r.flatten().numpy()) for r in data.train.x] + [
        bytes(r.flatten().numpy()) for r in data.val.x]
    assert sorted(held) == sorted(rows)


def test_cifar_root_may_be_the_batches_folder_itself(make_cfg, cifar10):
    root, _ = cifar10
    data = build_data(cifar_cfg(make_cfg, root / "cifar-10-batches-py"), seed=0)
    assert data.train.num_samples == 32


def test_cifar_split_is_seeded(make_cfg, cifar10):
    root, _ = cifar10
    a = build_data(cifar_cfg(make_cfg, root), seed=0)
    b = build_data(cifar_cfg(make_cfg, root), seed=5)  # the run seed does not move the split
    c = build_data(cifar_cfg(make_cfg, root, "dataset.split_seed=1"), seed=0)
    assert torch.equal(a.val.x, b.val.x) and not torch.equal(a.val.x, c.val.x)


def test_cifar_augmentation_switches_off(make_cfg, cifar10):
    root, _ = cifar10
    data = build_data(cifar_cfg(make_cfg, root, "dataset.augment=false"), seed=0)
    x, y = next(iter(data.train))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(32, generator=g)[:6]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in STATS["cifar10"])
    torch.testing.assert_close(x, (data.train.x[order].float() / 255 - mean) / std)


def test_cifar_train_loader_is_deterministic_and_augments(make_cfg, cifar10):
    root, _ = cifar10
    cfg = cifar_cfg(make_cfg, root)
    a, b = build_data(cfg, seed=3), build_data(cfg, seed=3)
    epochs_a = [batches(a.train) for _ in range(2)]
    assert_same(epochs_a[0], batches(b.train))
    assert_same(epochs_a[1], batches(b.train))
    # a new epoch reshuffles and re-augments: same images, different pixels
    assert not torch.equal(epochs_a[0][0][0], epochs_a[1][0][0])
    other = batches(build_data(cfg, seed=4).train)
    assert not torch.equal(epochs_a[0][0][0], other[0][0])


@pytest.mark.parametrize("stop_after", [0, 2, 5])
def test_cifar_train_loader_resumes_mid_epoch(make_cfg, cifar10, tmp_path, stop_after):
    """A state taken after k batches of epoch 2 (through a checkpoint file) gives the rest of
    that epoch, crops and flips included, and then the same epoch 3."""
    root, _ = cifar10
    cfg = cifar_cfg(make_cfg, root)
    first = build_data(cfg, seed=1).train
    batches(first)  # epoch 1
    it = iter(first)
    head = [next(it) for _ in range(stop_after)]
    torch.save(first.state_dict(), tmp_path / "loader.pt")
    rest = [(x, y) for x, y in it]
    epoch3 = batches(first)
    assert len(head) + len(rest) == len(first)

    resumed = build_data(cfg, seed=99).train  # another seed: the state must override it
    resumed.load_state_dict(torch.load(tmp_path / "loader.pt"))
    assert_same(batches(resumed), rest)
    assert_same(batches(resumed), epoch3)


def test_loader_state_between_epochs_is_the_generator():
    """What the trainer saves after each epoch (and older checkpoints hold)."""
    x, y = torch.arange(20.0).unsqueeze(1), torch.arange(20)
    a = TensorLoader(x, y, 4, shuffle=True, seed=3)
    batches(a)
    state = a.state_dict()
    assert state["batch"] == 0
    expected = batches(a)
    b = TensorLoader(x, y, 4, shuffle=True, seed=0)
    b.load_state_dict({"generator": state["generator"]})
    assert_same(batches(b), expected)


def test_cifar_not_resident_gives_the_same_batches(make_cfg, cifar10):
    """(On the CPU both hold the data in the same place; the CUDA test below compares both.)"""
    root, _ = cifar10
    a = build_data(cifar_cfg(make_cfg, root), seed=0)
    b = build_data(cifar_cfg(make_cfg, root, "dataset.device_resident=false"), seed=0)
    assert_same(batches(a.train), batches(b.train))


# ---------------------------------------------------------------- MNIST


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_from_idx_files(make_cfg, tmp_path, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    arrays = write_idx(folder, n_train=40, n_test=10, gz=layout == "flat")
    cfg = make_cfg("dataset=mnist", f"dataset.root={tmp_path}", "dataset.val_size=10",
                   "dataset.batch_size=8").dataset
    data = build_data(cfg, seed=0)
    assert data.name == "mnist" and data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (30, 10, 10)
    xs, ys = next(iter(data.test))
    raw = torch.tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.float32)
    torch.testing.assert_close(xs[:, 0], (raw / 255 - 0.1307) / 0.3081)
    assert ys.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_labels_must_match_images(tmp_path):
    write_idx(tmp_path, n_train=40, n_test=10, gz=False)
    from .fakedata import idx_bytes
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(9)))
    cfg = {"name": "mnist", "root": str(tmp_path), "download": False, "batch_size": 8,
           "eval_batch_size": 8, "val_size": 10, "split_seed": 0, "device_resident": True}
    from omegaconf import OmegaConf
    with pytest.raises(PdpruneError, match=r"holds shape \(9,\), expected \(10,\) labels") as err:
        build_data(OmegaConf.create(cfg), seed=0)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- ImageFolder


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "inet"
    return root, write_imagefolder(root, n_train=5, n_val=2)


def reference_eval(path: Path) -> torch.Tensor:
    pipeline = T.Compose([T.Resize(28), T.CenterCrop(24), T.ToTensor(),
                          T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with Image.open(path) as img:
        return pipeline(img.convert("RGB"))


def test_imagefolder_shapes_split_labels_and_eval_transform(make_cfg, tree):
    root, written = tree
    data = build_data(imagenet_cfg(make_cfg, root), seed=0)
    assert data.name == "imagenet" and data.input_shape == (3, 24, 24) and data.num_classes == 3
    # 15 train/ images: 3 (20%) held out as val; val/ (6 images) is the test set
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (12, 3, 6)
    assert len(data.train) == 3 and len(data.test) == 2
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.long
    xs, ys = map(torch.cat, zip(*batches(data.test), strict=True))
    assert ys.tolist() == [label for _, label in written["val"]]  # sorted classes, sorted files
    want = torch.stack([reference_eval(path) for path, _ in written["val"]])
    torch.testing.assert_close(xs, want, rtol=0, atol=1e-5)


def test_imagefolder_val_split_is_seeded_and_at_least_one(make_cfg, tree):
    root, _ = tree
    a = build_data(imagenet_cfg(make_cfg, root), seed=0)
    b = build_data(imagenet_cfg(make_cfg, root), seed=1)
    c = build_data(imagenet_cfg(make_cfg, root, "dataset.split_seed=4"), seed=0)
    paths = [set(d.val.dataset.paths.tolist()) for d in (a, b, c)]
    assert paths[0] == paths[1] and paths[0] != paths[2]
    assert not paths[0] & set(a.train.dataset.paths.tolist())
    tiny = build_data(imagenet_cfg(make_cfg, root, "dataset.val_fraction=0"), seed=0)
    assert (tiny.train.num_samples, tiny.val.num_samples) == (14, 1)


def test_imagefolder_val_may_hold_a_subset_of_classes(make_cfg, tmp_path):
    written = write_imagefolder(tmp_path, n_train=3, n_val=2, val_classes=("cat",))
    data = build_data(imagenet_cfg(make_cfg, tmp_path), seed=0)
    assert data.num_classes == 3
    assert [y for _, y in written["val"]] == [2, 2]
    assert torch.cat([y for _, y in batches(data.test)]).tolist() == [2, 2]


def test_imagefolder_train_loader_resumes_and_ignores_workers(make_cfg, tree, tmp_path):
    """Order and RandomResizedCrop/flip come from the loader's draw: the same batches with
    worker processes or without, and from a state taken mid-epoch."""
    root, _ = tree
    cfg = imagenet_cfg(make_cfg, root)
    first = build_data(cfg, seed=2).train
    epoch1 = batches(first)
    it = iter(first)
    next(it)
    state = first.state_dict()
    rest = [(x, y) for x, y in it]
    epoch3 = batches(first)
    assert not torch.equal(epoch1[0][0], epoch3[0][0])

    again = build_data(cfg, seed=2).train
    assert_same(batches(again), epoch1)
    workers = build_data(imagenet_cfg(make_cfg, root, "dataset.num_workers=2"), seed=7).train
    assert workers.loader.num_workers == min(2, os.cpu_count())
    workers.load_state_dict(state)
    assert_same(batches(workers), rest)
    assert_same(batches(workers), epoch3)


def test_imagefolder_train_crops_are_random_resized(make_cfg, tree):
    root, _ = tree
    data = build_data(imagenet_cfg(make_cfg, root, "dataset.augment=false"), seed=0)
    aug = build_data(imagenet_cfg(make_cfg, root), seed=0)
    plain, augmented = batches(data.train), batches(aug.train)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(plain, augmented, strict=True))
    assert not torch.allclose(plain[0][0], augmented[0][0])


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image_is_one_line(make_cfg, tree, workers):
    root, written = tree
    bad = written["val"][0][0]
    bad.write_bytes(b"not a png")
    data = build_data(imagenet_cfg(make_cfg, root, f"dataset.num_workers={workers}"), seed=0)
    with pytest.raises(PdpruneError) as err:
        batches(data.test)
    assert str(err.value).startswith(f"{bad}: cannot read this image (")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- errors


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(PdpruneError) as err:
        check(argv)
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "imagenet"])
def test_missing_root_is_one_line(name):
    assert one_line_error([f"dataset={name}", "dataset.root=/no/such/dir"]) == (
        "dataset.root=/no/such/dir: no such directory")


@pytest.mark.parametrize(("name", "hint"), [
    ("cifar10", "torchvision's cifar-10-batches-py/ python pickles or dataset.download=true"),
    ("mnist", "MNIST's IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, [.gz]) or dataset.download=true"),
    ("imagenet", "ImageFolder trees train/<class>/<images> and val/<class>/<images>")])
def test_no_default_root_says_what_to_set(name, hint):
    fetch = "" if name == "imagenet" else f" to fetch them (into {download_root(name)})"
    assert one_line_error([f"dataset={name}"]) == (
        f"dataset.root=null: {name} has no default folder; set dataset.root to the folder with "
        f"{hint}{fetch}")


def test_download_is_checked_when_the_data_is_built(tmp_path):
    assert check(["dataset=cifar10", "dataset.download=true"]) == 1  # no network touched
    assert check(["dataset=mnist", f"dataset.root={tmp_path}/new", "dataset.download=true"]) == 1


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_download_fetches_with_torchvision_then_reads(make_cfg, tmp_path, monkeypatch, name):
    """dataset.download=true hands root (or the cache folder, for root=null) to torchvision's
    downloader, stood in for here by one that writes the tiny files where torchvision would."""
    import torchvision.datasets as tvd

    calls = []

    def fake(root, train, download):
        calls.append((root, train, download))
        if name == "cifar10":
            write_cifar(Path(root), "cifar10")
        else:
            write_idx(Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(tvd, "CIFAR10" if name == "cifar10" else "MNIST", fake)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = make_cfg(f"dataset={name}", "dataset.download=true", "dataset.val_size=8").dataset
    data = build_data(cfg, seed=0)
    assert calls == [(str(tmp_path / "cache" / "pdprune" / name), False, True)]
    assert data.train.num_samples == 32 and data.name == name

    def failing(root, train, download):
        raise RuntimeError("Error downloading cifar-10-python.tar.gz:\nTried ...")

    monkeypatch.setattr(tvd, "CIFAR10", failing)
    cfg = make_cfg("dataset=cifar10", f"dataset.root={tmp_path}/none", "dataset.download=true")
    with pytest.raises(PdpruneError) as err:
        build_data(cfg.dataset, seed=0)
    assert str(err.value) == (f"dataset.download=true: could not fetch cifar10 into "
                              f"{tmp_path}/none (RuntimeError: Error downloading "
                              "cifar-10-python.tar.gz:)")


def test_missing_cifar_batches_are_named(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    assert one_line_error(["dataset=cifar10", f"dataset.root={root}"]) == (
        f"dataset.root={root}: missing cifar-10-batches-py/data_batch_3, "
        "cifar-10-batches-py/test_batch (CIFAR-10 in torchvision's python-pickle layout; "
        "dataset.download=true fetches them)")
    assert "missing cifar-100-python/train, cifar-100-python/test" in one_line_error(
        ["dataset=cifar100", f"dataset.root={root}"])


def test_missing_mnist_files_are_named(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert one_line_error(["dataset=mnist", f"dataset.root={tmp_path}"]) == (
        f"dataset.root={tmp_path}: missing t10k-labels-idx1-ubyte[.gz] in "
        f"{tmp_path}/MNIST/raw (MNIST's IDX files)")


def test_imagefolder_layout_errors(tmp_path):
    argv = ["dataset=imagenet", f"dataset.root={tmp_path}"]
    (tmp_path / "train" / "ant").mkdir(parents=True)
    assert one_line_error(argv).startswith(f"dataset.root={tmp_path}: no val/ folder (expected "
                                           "ImageFolder trees train/<class>/<images> and ")
    (tmp_path / "val").mkdir()
    assert one_line_error(argv).startswith(f"dataset.root={tmp_path}: val/ has no class "
                                           "sub-folders")
    for name in ("bee", "cat", "dog", "eel"):
        (tmp_path / "val" / name).mkdir()
    assert one_line_error(argv) == (f"dataset.root={tmp_path}: val/ has classes that train/ "
                                    "lacks: bee, cat, dog and 1 more")
    assert one_line_error([*argv, "dataset.image_size=300"]) == (
        "dataset.resize_size=256: must be >= dataset.image_size=300 (it is cropped to that)")


@pytest.mark.parametrize(("content", "message"), [
    (b"\x80\x04garbage", "not a CIFAR pickle (UnpicklingError"),
    (pickle.dumps([1, 2, 3]), "not a CIFAR batch (holds a list"),
    (pickle.dumps({b"data": np.zeros((4, 3072), np.uint8)}), "not a CIFAR-10 batch (no b'labels')"),
    (pickle.dumps({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}),
     "b'data' is uint8 of shape (4, 1024), expected uint8 of shape (N, 3072)"),
    (pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}),
     "3 labels for 4 images"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
     "label 10 out of range for 10 classes"),
], ids=["garbage", "list", "no-labels", "short-rows", "label-count", "label-range"])
def test_malformed_cifar_file_is_one_line_at_load(make_cfg, cifar10, content, message):
    root, _ = cifar10
    path = root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(content)
    with pytest.raises(PdpruneError) as err:
        build_data(cifar_cfg(make_cfg, root), seed=0)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_too_large_val_size_is_one_line(make_cfg, cifar10):
    root, _ = cifar10
    with pytest.raises(PdpruneError, match=r"^dataset.val_size=5000: leaves no training images "
                                           r"\(40 in "):
        build_data(make_cfg("dataset=cifar10", f"dataset.root={root}").dataset, seed=0)


def test_run_resumed_on_cifar_equals_uninterrupted(make_cfg, tmp_path, monkeypatch):
    """Through the trainer: a run killed after epoch 2 and resumed trains on the same augmented
    batches as one never stopped, so it ends with the same weights and metrics."""
    import json

    from safetensors.torch import load_file

    from pdprune.run import run
    from pdprune.train import loop

    write_cifar(tmp_path / "data", "cifar10", per_batch=8, n_test=8)
    overrides = ["dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "dataset.val_size=8",
                 "dataset.batch_size=8", "model=lenet", "model.width=0.5", "method=gmp",
                 "trainer.epochs=3", "schedule.end_epoch=3", "sparsity=0.5",
                 "trainer.progress=false"]
    run(make_cfg(*overrides), tmp_path / "whole")

    class Killed(Exception):
        pass

    save = loop.Trainer.save_checkpoint

    def save_then_die(self):
        save(self)
        if self.state.epoch == 2:
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run(make_cfg(*overrides), tmp_path / "killed")
    monkeypatch.undo()
    run(make_cfg(*overrides, f"trainer.resume={tmp_path / 'killed'}"), tmp_path / "killed")

    whole, killed = (load_file(str(tmp_path / d / "model.safetensors"))
                     for d in ("whole", "killed"))
    assert all(torch.equal(whole[k], killed[k]) for k in whole)

    def metrics(d):
        lines = (tmp_path / d / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"}
                for line in lines]

    assert metrics("whole") == metrics("killed")


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cifar_on_the_gpu_never_syncs_and_matches_the_cpu(make_cfg, cifar10):
    root, _ = cifar10
    cfg = cifar_cfg(make_cfg, root)
    cpu, gpu = build_data(cfg, seed=0), build_data(cfg, seed=0, device="cuda")
    host = build_data(cifar_cfg(make_cfg, root, "dataset.device_resident=false"), seed=0,
                      device="cuda")
    assert gpu.train.x.is_cuda and gpu.train.x.dtype == torch.uint8 and gpu.test.y.is_cuda
    assert not host.train.x.is_cuda
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = [(x, y) for x, y in gpu.train]
        got_test = [(x, y) for x, y in gpu.test]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(x.is_cuda and y.is_cuda for x, y in got + got_test)
    from_host = batches(host.train)
    for (xg, yg), (xc, yc), (xh, yh) in zip(got, batches(cpu.train), from_host, strict=True):
        assert torch.equal(yg.cpu(), yc) and torch.equal(yh, yc)
        assert torch.equal(xg.cpu(), xh)  # the same kernels on the same device
        torch.testing.assert_close(xg.cpu(), xc)


# ---------------------------------------------------------------- end to end


def prune_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pdprune", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_prune_train_on_tiny_cifar10_and_imagefolder(tmp_path):
    write_cifar(tmp_path / "cifar", "cifar10", per_batch=16, n_test=16)
    write_imagefolder(tmp_path / "inet", n_train=6, n_val=2, size=(32, 32))
    common = ["model=lenet", "trainer.epochs=2", "trainer.progress=false", "method=gmp",
              "schedule.end_epoch=2", "sparsity=0.5"]
    out = prune_train(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'cifar'}",
                      "dataset.val_size=16", "dataset.batch_size=16", *common)
    assert "lenet / cifar10" in out.stdout and "budget exact" in out.stdout
    out = prune_train(tmp_path, "dataset=imagenet", f"dataset.root={tmp_path / 'inet'}",
                      "dataset.image_size=28", "dataset.resize_size=32", "dataset.num_workers=2",
                      "dataset.batch_size=4", *common)
    assert "lenet / imagenet" in out.stdout and "budget exact" in out.stdout


class _CreatesAFile:
    """A pickle payload that would create a file when unpickled by plain pickle.load."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_poisoned_cifar_pickle_runs_nothing_and_is_one_line(tmp_path):
    import pickle

    from pdprune.data.cifar import read_cifar_batch
    from pdprune.data.locate import CIFAR

    marker = tmp_path / "ran"
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _CreatesAFile(marker), b"labels": [1]}, protocol=2))
    with pytest.raises(PdpruneError) as err:
        read_cifar_batch(batch, CIFAR["cifar10"])
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
