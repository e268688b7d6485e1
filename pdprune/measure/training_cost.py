"""What training cost, in multiply-accumulates: the network each epoch actually trained (after
channel pruning, the smaller one), forward and backward (3x the forward MACs) over the epoch's
samples. EPI's claim is about this: the accuracy of the best fixed pruning epoch at a fraction
of the training cost."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .cost import layer_macs

BACKWARD_FACTOR = 3  # forward + backward (gradients w.r.t. inputs and weights) ~ 3 forwards


def macs_per_epoch(build: Callable[[tuple[int, ...]], nn.Module], input_shape: tuple[int, ...],
                   epoch_counts: list[list[int]]) -> list[int]:
    """Forward MACs per sample of the network of each epoch, `build(counts)` (the channels each
    group had removed that epoch); each distinct count vector is built and measured once."""
    measured: dict[tuple[int, ...], int] = {}
    for counts in epoch_counts:
        key = tuple(counts)
        if key not in measured:
            measured[key] = sum(d for d, _ in layer_macs(build(key), input_shape,
                                                         torch.device("cpu")).values())
    return [measured[tuple(c)] for c in epoch_counts]


def training_cost(epoch_macs: list[int], dense_macs: int, samples_per_epoch: int) -> dict:
    """Train MACs spent and the dense equivalent; `dense_epochs`: epochs before any pruning."""
    dense_epochs = next((i for i, m in enumerate(epoch_macs) if m != dense_macs),
                        len(epoch_macs))
    spent = BACKWARD_FACTOR * samples_per_epoch * sum(epoch_macs)
    dense = BACKWARD_FACTOR * samples_per_epoch * dense_macs * len(epoch_macs)
    return {"dense_epochs": dense_epochs, "forward_macs_per_epoch": epoch_macs,
            "samples_per_epoch": samples_per_epoch, "train_macs": spent,
            "dense_train_macs": dense, "vs_dense": spent / max(1, dense)}
