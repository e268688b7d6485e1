"""model.checkpoint: local weights loaded into a freshly built model. Nothing is downloaded.

Reads a torchvision-style state_dict (.pt / .pth, torch.load with weights_only=True) or one of
our exports (model.safetensors). Keys whose shapes differ from the model's (an ImageNet classifier
on a 10-class task, a small-input stem) are skipped and logged; any other missing or unexpected
key is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import PdpruneError

log = logging.getLogger("pdprune")
SHOWN = 3  # keys named in a message


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in `path`, on the CPU."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix: one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PdpruneError(f"model.checkpoint={path}: cannot read it ({reason})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise PdpruneError(f"model.checkpoint={path}: not a state_dict (name -> tensor)")
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load `path` into `model` in place (and return it)."""
    path = Path(path).expanduser()
    state = read_state_dict(path)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    # BatchNorm fills in num_batches_tracked itself when an (older) state_dict lacks it
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    if missing:
        raise PdpruneError(f"model.checkpoint={path}: {len(missing)} of the model's keys are not "
                           f"in it: {_few(missing)}")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise PdpruneError(f"model.checkpoint={path}: {len(unexpected)} keys the model does not "
                           f"have: {_few(unexpected)}")
    for key in mismatched:
        log.info("model.checkpoint: skipped %s: shape %s in %s, %s in the model", key,
                 tuple(state[key].shape), path.name, tuple(own[key].shape))
    model.load_state_dict({k: v for k, v in state.items() if k not in mismatched}, strict=False)
    log.info("model.checkpoint: loaded %d tensors from %s (%d skipped for their shape)",
             len(state) - len(mismatched), path, len(mismatched))
    return model
