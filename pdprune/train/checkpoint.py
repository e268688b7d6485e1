"""Checkpoints: everything a killed run needs to continue as if it never stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import PdpruneError

CHECKPOINT = Path("checkpoints") / "last.pt"


def rng_states() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def resolve_checkpoint(resume: str) -> Path:
    """trainer.resume names a run folder or a checkpoint file."""
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise PdpruneError(f"trainer.resume={resume}: no checkpoint at {path}")
    return path


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
