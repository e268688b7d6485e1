"""Checkpoints: everything a killed run needs to continue as if it never stopped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..config.flat import flatten
from ..errors import ConfigError, PdpruneError
from ..models.checkpoint import torch_load

CHECKPOINT = Path("checkpoints") / "last.pt"
# what every checkpoint holds (Trainer.save_checkpoint); later versions may add keys
PAYLOAD = ("state", "model", "optimizer", "lr_scheduler", "pruner", "train_loader", "rng",
           "config")


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


def temporary(path: Path) -> Path:
    """Where save_checkpoint writes before the rename (a leftover means a write died)."""
    return path.with_suffix(".tmp")


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact. The payload
    holds only tensors and plain values, so that it loads with weights_only=True."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        torch.save(payload, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: free what the partial file took
        raise
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
    """A checkpoint, loaded without running anything from the file (weights_only); one line
    naming the file when it does not load or lacks what a checkpoint holds."""
    payload = torch_load(path, f"checkpoint {path}")
    if not isinstance(payload, dict):
        raise PdpruneError(f"checkpoint {path}: not a pdprune checkpoint (it holds a "
                           f"{type(payload).__name__}, not a dict)")
    missing = [key for key in PAYLOAD if key not in payload]
    if missing:
        raise PdpruneError(f"checkpoint {path}: not a pdprune checkpoint (no "
                           f"{', '.join(missing)})")
    for key in ("config", "state", "model"):
        if not isinstance(payload[key], dict):
            raise PdpruneError(f"checkpoint {path}: damaged ({key} is a "
                               f"{type(payload[key]).__name__}, not a dict)")
    return payload


RESUME_MAY_CHANGE = ("trainer.resume", "trainer.progress", "trainer.device", "trainer.threads",
                     "trainer.overwrite", "trainer.checkpoint_every", "trainer.log_every_n_steps")


def check_same_run(saved: dict, current: dict) -> None:
    """A resumed run keeps the config it started with: name the first key that differs,
    shallowest first (so `sparsity`, not the `schedule.target` that interpolates it)."""
    old, new = flatten(saved), flatten(current)
    # model.match_nonzeros derives the width when the run starts: compare the cause only
    derived = {"model.width"} if old.get("model.match_nonzeros") is not None else set()
    for key in sorted(old.keys() | new.keys(), key=lambda k: (k.count("."), k)):
        if key in RESUME_MAY_CHANGE or key in derived or old.get(key) == new.get(key) \
                or key.startswith("logger."):  # where a run reports, not what it computes
            continue
        parts = key.split(".")
        for group in (".".join(parts[:i]) for i in range(1, len(parts))):
            name = f"{group}.name"  # another model= / method= ...: name the group, not a key
            if old.get(name) != new.get(name):
                raise ConfigError(group, new.get(name), f"differs from the run being resumed "
                                  f"({old.get(name)}); a resumed run keeps its config")
        raise ConfigError(key, new.get(key), f"differs from the run being resumed "
                          f"({old.get(key)}); a resumed run keeps its config")




def unfit_checkpoint(config: dict, run_dir: Path, exc: BaseException) -> PdpruneError:
    """A checkpoint that loaded but does not fit the run built from its config (a file made
    by hand, or damaged inside): one line naming it."""
    resume = (config.get("trainer") or {}).get("resume")
    path = resolve_checkpoint(resume) if resume else run_dir / CHECKPOINT
    detail = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        detail = f"no {detail}"
    short = detail if len(detail) <= 160 else detail[:157] + "..."
    return PdpruneError(f"checkpoint {path}: does not fit this run ({short})")
