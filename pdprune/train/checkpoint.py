"""Checkpoints: everything a killed run needs to continue as if it never stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, PdpruneError

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


RESUME_MAY_CHANGE = ("trainer.resume", "trainer.progress", "trainer.device", "trainer.threads")


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def check_same_run(saved: dict, current: dict) -> None:
    """A resumed run keeps the config it started with: name the first key that differs,
    shallowest first (so `sparsity`, not the `schedule.target` that interpolates it)."""
    old, new = _flatten(saved), _flatten(current)
    # model.match_nonzeros derives the width when the run starts: compare the cause only
    derived = {"model.width"} if old.get("model.match_nonzeros") is not None else set()
    for key in sorted(old.keys() | new.keys(), key=lambda k: (k.count("."), k)):
        if key in RESUME_MAY_CHANGE or key in derived or old.get(key) == new.get(key):
            continue
        raise ConfigError(key, new.get(key), f"differs from the run being resumed "
                          f"({old.get(key)}); a resumed run keeps its config")


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
