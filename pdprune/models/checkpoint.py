"""model.checkpoint: local weights loaded into a freshly built model. Nothing is downloaded.

Reads a torchvision-style state_dict (.pt / .pth, torch.load with weights_only=True), one of
our exports (model.safetensors), or a run folder (its model.safetensors). Keys whose shapes
differ from the model's (an ImageNet classifier on a 10-class task, a small-input stem) are
skipped and logged; any other missing or unexpected key is an error, and so is a file none of
whose weights fit.

A layer-pruned run's weights (method=layerprune) belong to a shallower network: the blocks the
run's summary.json records as removed are removed from the model before the weights load.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import PdpruneError

log = logging.getLogger("pdprune")
SHOWN = 3  # keys named in a message
WEIGHTS = "model.safetensors"  # what a run folder holds
SUMMARY = "summary.json"


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def load_reason(exc: BaseException, archive: bool = True) -> str:
    """Why torch.load / safetensors refused a file, in a few words (torch's own text is a
    paragraph that suggests turning the safe unpickler off: never for a file we did not write).
    `archive`: the file starts as torch.save's zip archives do; a file that does not and fails
    to unpickle is not one torch.save wrote, whatever the unpickler tripped on first."""
    text = str(exc)
    blocked = re.search(r"unsupported GLOBAL (\S+) whose module \S+ is blocked", text)
    if blocked:  # torch names a blocked module (os, posix, subprocess...) outside that header
        return (f"it holds a pickled object ({blocked.group(1)}), not only tensors and plain "
                "values; refused, nothing in it ran")
    if "WeightsUnpickler error:" in text:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        if found:
            return (f"it holds a pickled object ({found.group(1)}), not only tensors and plain "
                    "values; refused, nothing in it ran")
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a file torch.save wrote ({detail})"
    if isinstance(exc, EOFError) or not text.strip():
        return "empty or truncated"
    first = text.strip().splitlines()[0]
    return f"{'damaged or truncated' if archive else 'not a file torch.save wrote'} ({first})"


def is_archive(path: Path) -> bool:
    """Whether `path` begins like a zip archive (torch.save's format since torch 1.6)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def torch_load(path: Path, what: str) -> object:
    """torch.load that runs nothing from the file (tensors and plain values only); a file that
    does not load is a one-line PdpruneError: `what` (naming the file), then why."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix: one line
        raise PdpruneError(f"{what}: {load_reason(exc, is_archive(path))}") from None


def weights_file(checkpoint: str | Path) -> Path:
    """model.checkpoint names a weights file or a run folder (its model.safetensors)."""
    path = Path(checkpoint).expanduser()
    return path / WEIGHTS if path.is_dir() else path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in `path`, on the CPU."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise PdpruneError(f"model.checkpoint={path}: cannot read it: "
                               f"{load_reason(exc)}") from None
    else:
        state = torch_load(path, f"model.checkpoint={path}: cannot read it")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise PdpruneError(f"model.checkpoint={path}: not a state_dict (name -> tensor)")
    return state


def removed_blocks(path: Path) -> list[str]:
    """The blocks a layer-pruned run removed, from the summary.json beside its weights
    (none for any other file)."""
    summary = path.parent / SUMMARY
    if path.name != WEIGHTS or not summary.is_file():
        return []
    try:
        blocks = json.loads(summary.read_text()).get("blocks") or {}
        return [str(name) for name in blocks.get("removed") or []]
    except (ValueError, AttributeError, TypeError, OSError) as exc:
        raise PdpruneError(f"model.checkpoint={path}: cannot read {summary} (it says which "
                           f"blocks the run removed): {exc}") from None


def shallower(model: nn.Module, path: Path) -> None:
    """Remove, in place, the blocks that the run which wrote `path` removed."""
    names = removed_blocks(path)
    if not names:
        return
    from .blocks import remove_blocks

    try:
        remove_blocks(model, names)
    except ValueError as exc:
        raise PdpruneError(f"model.checkpoint={path}: the run removed blocks that this model "
                           f"({type(model).__name__}) cannot lose: {exc}") from None
    log.info("model.checkpoint: removed %d blocks as the layer-pruned run did: %s", len(names),
             ", ".join(names))


def check_fits(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Raise unless `state` loads into `model`; returns the keys to skip for their shape."""
    own = model.state_dict()
    # BatchNorm fills in num_batches_tracked itself when an (older) state_dict lacks it
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        hint = "; a layer-pruned run's weights load from its run folder" \
            if path.name != WEIGHTS or not (path.parent / SUMMARY).is_file() else ""
        raise PdpruneError(f"model.checkpoint={path}: {len(missing)} of the model's keys are not "
                           f"in it: {_few(missing)}{hint}")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise PdpruneError(f"model.checkpoint={path}: {len(unexpected)} keys the model does not "
                           f"have: {_few(unexpected)}")
    mismatched = [k for k, v in state.items() if v.shape != own[k].shape]
    weights = [k for k, v in own.items() if v.dim() >= 2]
    if weights and all(k in mismatched for k in weights):  # loading would change nothing
        k = weights[0]
        raise PdpruneError(f"model.checkpoint={path}: none of the model's {len(weights)} weight "
                           f"tensors has its shape in the file (e.g. {k}: "
                           f"{tuple(state[k].shape)} there, {tuple(own[k].shape)} in the model); "
                           "weights of another width or input size?")
    return mismatched


def load_weights(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Load `checkpoint` (a file or a run folder) into `model` in place (and return it)."""
    path = weights_file(checkpoint)
    state = read_state_dict(path)
    shallower(model, path)
    mismatched = check_fits(model, state, path)
    for key in mismatched:
        log.info("model.checkpoint: skipped %s: shape %s in %s, %s in the model", key,
                 tuple(state[key].shape), path.name, tuple(model.state_dict()[key].shape))
    model.load_state_dict({k: v for k, v in state.items() if k not in mismatched}, strict=False)
    log.info("model.checkpoint: loaded %d tensors from %s (%d skipped for their shape)",
             len(state) - len(mismatched), path, len(mismatched))
    return model
