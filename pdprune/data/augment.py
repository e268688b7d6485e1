"""Augmentation of whole batches with tensor ops: no per-sample Python, runs where the batch is.

The random parameters are drawn elsewhere (a loader's CPU generator, once per epoch) and passed
in, so the result is a pure function of the batch and the draw: deterministic, resumable, and
free of host synchronisation on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor | None,
              padding: int) -> torch.Tensor:
    """Image i of the result is the (H, W) window at (top[i], left[i]) of x[i] zero-padded by
    `padding` on every side, mirrored left-right where flip[i]. x: (N, C, H, W), any dtype;
    top, left: (N,) integers in [0, 2 * padding]; flip: (N,) bool or None."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    device = x.device
    rows = top[:, None] + torch.arange(h, device=device)  # (N, H) rows of the padded image
    cols = left[:, None] + torch.arange(w, device=device)  # (N, W)
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # a mirrored window reads backwards
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class RandomCropFlip:
    """Random crop of the original size from the image zero-padded by `padding` pixels, then a
    horizontal flip with probability 1/2 (the standard CIFAR augmentation, on whole batches).

    Parameters per sample, one row of `draw`: (top, left, flip)."""

    columns = 3

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding, self.flip = padding, flip

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        flips = torch.randint(0, 2, (n, 1), generator=generator)
        if not self.flip:
            flips.zero_()
        return torch.cat([offsets, flips], dim=1)

    def __call__(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        flip = params[:, 2].bool() if self.flip else None
        return crop_flip(x, params[:, 0], params[:, 1], flip, self.padding)
