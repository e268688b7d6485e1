"""dataset=custom: the user's own data from `dataset._target_`, any importable callable (a
Dataset class or a function), called by Hydra's instantiate with the dataset's other keys
(`dataset.n=100`: n=100).

It returns one torch Dataset (split by seed into train / val / test: dataset.val_size,
dataset.test_size, fractions or counts as sizes.py reads them), a dict with "train" and
optionally "val" (or "validation") and "test", or a tuple (train, val, test) or (train, test)
(as torchvision's train=True / train=False pairs; val is then held out of train). A missing
split is held out of train.

Samples are (input, label) pairs: input a tensor (or a numpy array, a number, a PIL image:
ToTensor), label an integer class index. The sets are read once into memory and served by
TensorLoader; uint8 inputs stay uint8 there and are scaled to [0, 1] per batch. The input shape
is that of the first sample, the class count the largest label + 1.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.schema import CustomDatasetConfig
from ..errors import ConfigError, PdpruneError


def one_line_reason(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def target(cfg: DictConfig):
    """The callable dataset._target_ names (its module imported); ConfigError when it cannot
    be found. The working directory is importable (the CLI puts it on sys.path)."""
    from hydra._internal.utils import _locate  # hydra.utils.get_object, less its error log

    name = None if OmegaConf.is_missing(cfg, "_target_") else cfg.get("_target_")
    if not name:
        raise ConfigError("dataset._target_", "null", "dataset=custom needs the import path of "
                          "a callable returning a torch Dataset, e.g. my_data.make_dataset")
    try:
        found = _locate(name)
    except Exception as exc:  # noqa: BLE001 - an import runs the user's module: anything
        cause = exc.__cause__ or exc
        raise ConfigError("dataset._target_", name, f"cannot import it "
                          f"({one_line_reason(cause)})") from None
    if not callable(found):
        raise ConfigError("dataset._target_", name, f"is a {type(found).__name__}, not a "
                          "callable")
    return found


def make_splits(cfg: DictConfig) -> dict[str, Any]:
    """What the target returns, as {split: Dataset} (splits it does not give are absent)."""
    from hydra.utils import instantiate

    target(cfg)
    own = {f.name for f in fields(CustomDatasetConfig)}
    args = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in own}
    try:
        made = instantiate({"_target_": cfg._target_, **args}, _convert_="all")
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is one line
        cause = exc.__cause__ or exc
        raise PdpruneError(f"dataset._target_={cfg._target_}: could not build the dataset "
                           f"({one_line_reason(cause)})") from None
    if isinstance(made, dict):
        splits = {("val" if k == "validation" else k): v for k, v in made.items()}
        unknown = sorted(set(splits) - {"train", "val", "test"})
        if "train" not in splits or unknown:
            raise PdpruneError(f"dataset._target_={cfg._target_}: returned a dict with keys "
                               f"{sorted(made)}; expected train and optionally val, test")
        return splits
    if isinstance(made, tuple | list):
        if len(made) == 3:
            return dict(zip(("train", "val", "test"), made, strict=True))
        if len(made) == 2:
            return {"train": made[0], "test": made[1]}
        raise PdpruneError(f"dataset._target_={cfg._target_}: returned {len(made)} datasets; "
                           "expected (train, val, test) or (train, test)")
    return {"train": made}


def build_custom(cfg: DictConfig, seed: int, device=None):
    import torch

    from .bundle import DataBundle, TensorLoader, seeded_split
    from .sizes import held_out

    device = device or torch.device("cpu")
    splits = {split: materialise(data, f"dataset._target_={cfg._target_} ({split})")
              for split, data in make_splits(cfg).items()}
    x, y = splits["train"]
    held = [split for split in ("val", "test") if split not in splits]
    counts = [held_out(cfg[f"{split}_size"], len(x), f"dataset.{split}_size", cfg._target_)
              for split in held]
    counts = [max(1, c) for c in counts]  # an empty val or test set cannot be evaluated
    if sum(counts) >= len(x):
        raise PdpruneError(f"dataset._target_={cfg._target_}: {len(x)} training samples leave "
                           f"none after holding out {' and '.join(held)}")
    train_idx, *parts = seeded_split(len(x), tuple(counts), cfg.split_seed)
    for split, idx in zip(held, parts, strict=True):
        splits[split] = (x[idx], y[idx])
    splits["train"] = (x[train_idx], y[train_idx])
    shapes = {split: tuple(xs.shape[1:]) for split, (xs, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        raise PdpruneError(f"dataset._target_={cfg._target_}: the splits' inputs differ in "
                           f"shape: {shapes}")
    classes = max(int(ys.max()) for _, ys in splits.values() if len(ys)) + 1
    scale = uint8_scaling(x.dtype)

    def loader(split: str, batch_size: int, **kw) -> TensorLoader:
        xs, ys = splits[split]
        return TensorLoader(xs, ys, batch_size, transform=scale, device=device, **kw)

    return DataBundle(
        name="custom",
        train=loader("train", cfg.batch_size, shuffle=True, drop_last=True, seed=seed),
        val=loader("val", cfg.eval_batch_size),
        test=loader("test", cfg.eval_batch_size),
        input_shape=shapes["train"],
        num_classes=classes,
    )


def uint8_scaling(dtype):
    import torch

    if dtype != torch.uint8:
        return None
    return lambda x: x.float().div_(255)


def materialise(data, where: str):
    """A Dataset of (input, label) pairs as two tensors: inputs stacked, int64 labels."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int):
            sample = data[i]
            if not isinstance(sample, tuple | list) or len(sample) != 2:
                raise PdpruneError(f"{where}: sample {i} is a {type(sample).__name__}, "
                                   "expected an (input, label) pair")
            x, label = sample
            if not isinstance(x, torch.Tensor) and hasattr(x, "getbands"):  # a PIL image
                from torchvision.transforms.functional import to_tensor

                x = to_tensor(x)
            return torch.as_tensor(x), torch.as_tensor(label)

    try:
        n = len(data)
    except TypeError:
        raise PdpruneError(f"{where}: is a {type(data).__name__}, expected a torch Dataset with "
                           "a length") from None
    if n == 0:
        raise PdpruneError(f"{where}: holds no samples")
    xs, ys = [], []
    try:
        for x, y in DataLoader(Pairs(), batch_size=256):
            xs.append(x)
            ys.append(y)
    except PdpruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__, or unequal shapes
        raise PdpruneError(f"{where}: cannot read its samples ({one_line_reason(exc)})") \
            from None
    x, y = torch.cat(xs), torch.cat(ys)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or \
            (len(y) and int(y.min()) < 0):
        raise PdpruneError(f"{where}: labels must be integer class indices >= 0 (got "
                           f"{y.dtype} of shape {tuple(y.shape)})")
    return x, y.long()
