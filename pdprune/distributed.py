"""Data-parallel training across processes (`torchrun --nproc_per_node=N -m pdprune ...`).

Every rank builds the same data, model and pruner from the same seed and walks the same global
batches in the same order; each trains on its slice of every global batch and DDP averages the
gradients, so the weights, and every mask, schedule and threshold computed from them, stay
identical on all ranks (what a 1-process run on the same global batch computes, up to float
summation order). Decisions that depend on a rank's own measurements (timed latency) are taken
by rank 0 and broadcast. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()  # one process, no process group


def world_from_env() -> World:
    """The process's place, as torchrun sets it (RANK, WORLD_SIZE, LOCAL_RANK); one process
    without them."""
    return World(rank=int(os.environ.get("RANK", 0)), size=int(os.environ.get("WORLD_SIZE", 1)),
                 local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def start(world: World, device: torch.device) -> None:
    """Join the process group (NCCL between GPUs, gloo on CPUs); nothing for one process."""
    if world.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=world.rank, world_size=world.size)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str | None:
    return dist.get_backend() if running() else None


def running() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def from_main(obj):
    """Rank 0's `obj` on every rank (any picklable object); `obj` itself in one process."""
    if not running():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks, in place (a float tensor); unchanged in one process."""
    if running():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def global_mean_scale(local_count: int, device: torch.device) -> torch.Tensor | float:
    """The factor that turns this rank's mean loss into its share of the global batch's mean:
    DDP averages gradients over ranks, so rank r's loss is weighted n_r * world / n. A tensor
    on `device` (no host synchronisation in the step); 1.0 in one process."""
    if not running():
        return 1.0
    total = torch.tensor(float(local_count), device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return local_count * dist.get_world_size() / total


class RankSlice:
    """This rank's part of each global batch of `loader` (contiguous, sizes differing by at most
    one sample). Every rank iterates the whole loader with the same generator, so order,
    augmentation and resume state are those of one process; the checkpointed state is the
    global loader's."""

    def __init__(self, loader, world: World):
        self.loader, self.world = loader, world

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield (x.tensor_split(self.world.size)[self.world.rank],
                   y.tensor_split(self.world.size)[self.world.rank])

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):  # num_samples, state_dict, load_state_dict, ...
        return getattr(self.loader, name)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` under DistributedDataParallel when several ranks run, else itself."""
    if not running():
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


@torch.no_grad()
def max_difference_across_ranks(model: nn.Module) -> float:
    """The largest |value - rank 0's value| over every parameter and buffer (weights, masks,
    BN statistics) and every rank: 0.0 when all ranks hold the same model."""
    if not running():
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    for tensor in model.state_dict().values():
        mine = tensor.double()  # also ints and bools (gloo broadcasts neither bool nor mixed)
        reference = mine.clone()
        dist.broadcast(reference, src=0)
        if mine.numel():
            worst = torch.maximum(worst, (mine - reference).abs().max())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return worst.item()
