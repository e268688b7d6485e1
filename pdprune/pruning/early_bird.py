"""Early-Bird tickets' trigger (You et al., ICLR 2020; docs/methods.md#early-bird): prune once
the channel mask at the target has stopped changing from epoch to epoch.

A mask m_t (after epoch t) says, for every channel of the prunable coupled groups, kept (True)
or pruned. The distance of two masks is their normalised Hamming distance, the fraction of all
C channels on which they disagree:

    H(m, m') = (1/C) * sum_c [m_c != m'_c]

`pairs` says which distances the trigger reads; the paper and the authors' code differ:
- "consecutive" (the paper: "measure the mask distance between consecutive epochs ... draw
  EB tickets when the last five recorded mask distances are all smaller than a threshold"):
  d_t = H(m_t, m_{t-1}); fires at the first t whose last `window` distances are all < epsilon
  (the earliest is t = window + 1).
- "newest" (the authors' EarlyBird class: a FIFO of `window` masks, the newest compared with
  each of the others): d_t = max_{j=1..window-1} H(m_t, m_{t-j}); fires at the first t with a
  full queue (t >= window) and d_t <= epsilon (their test is `not any(d > 0.1)`). Before the
  queue is full d_t is the max over the masks there are, logged but never firing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

PAIRS = ("consecutive", "newest")

Mask = list[torch.Tensor]  # one bool vector per coupled group (True: kept)


def mask_distance(a: Mask, b: Mask) -> float:
    """H: the fraction of channels whose keep / prune differs between two masks."""
    if len(a) != len(b) or not a:
        raise ValueError("masks must cover the same, non-empty list of groups")
    differ = sum(int((x.cpu() != y.cpu()).sum()) for x, y in zip(a, b, strict=True))
    return differ / sum(x.numel() for x in a)


@dataclass
class EarlyBirdQueue:
    """The last masks, the distance d_t of every epoch observed, and the trigger."""

    epsilon: float
    window: int = 5
    pairs: str = "consecutive"
    masks: list[Mask] = field(default_factory=list)  # the last `window` masks (fewer early on)
    distances: list[float | None] = field(default_factory=list)  # d_t per epoch (None: t = 1)

    def __post_init__(self):
        if self.pairs not in PAIRS:
            raise ValueError(f"pairs must be one of {PAIRS}, not {self.pairs!r}")

    def observe(self, mask: Mask) -> float | None:
        """Record m_t for the epoch just finished; returns d_t."""
        earlier = self.masks[-1:] if self.pairs == "consecutive" \
            else self.masks[max(0, len(self.masks) - (self.window - 1)):] if self.window > 1 else []
        value = max((mask_distance(mask, m) for m in earlier), default=None)
        self.masks = [*self.masks, [k.clone() for k in mask]][-self.window:]
        self.distances.append(value)
        return value

    def fires(self) -> bool:
        """Whether the epoch just observed draws the ticket."""
        if self.pairs == "consecutive":
            last = self.distances[-self.window:]
            return len(last) == self.window and all(d is not None and d < self.epsilon
                                                    for d in last)
        value = self.distances[-1] if self.distances else None
        return len(self.distances) >= self.window and value is not None \
            and value <= self.epsilon

    def state_dict(self) -> dict:
        return {"masks": [[k.clone() for k in m] for m in self.masks],
                "distances": list(self.distances)}

    def load_state_dict(self, state: dict) -> None:
        self.masks = [[k.clone() for k in m] for m in state["masks"]]
        self.distances = list(state["distances"])
