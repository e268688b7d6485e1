"""EPI, the early pruning indicator (Shen et al., CVPR 2022; docs/methods.md#epi): decide at
which epoch to prune channels, from how stable the sub-network that pruning would keep is.

After each epoch t the channels are ranked by importance and the kept-channel count n_l of
every prunable layer (coupled channel group) at the target gives the sub-network N_t.
  d_l(N1, N2) = |n_l^1 - n_l^2| / (n_l^1 + n_l^2),   Psi(N1, N2) = 1 - mean_l d_l,
  EPI_t = (1/r) sum_{j=1..r} Psi(N_t, N_{t-j}).
Pruning triggers at the first epoch where EPI_t > tau and EPI_t exceeds each of the previous
`patience` EPI values.

(choice) Where fewer than r earlier sub-networks exist, EPI_t averages over those there are
(EPI_1 is undefined); where fewer than `patience` earlier EPI values exist, EPI_t must exceed
those there are, and at least one. So the earliest possible trigger is epoch 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TAU = {"bn_taylor": 0.944, "taylor": 0.944, "bn_gamma": 0.983, "l1": 0.983, "l2": 0.983}


def distance(kept_1: int, kept_2: int) -> float:
    """d_l: how far apart two kept counts of one layer are, in [0, 1]."""
    total = kept_1 + kept_2
    return abs(kept_1 - kept_2) / total if total else 0.0


def similarity(subnet_1: list[int], subnet_2: list[int]) -> float:
    """Psi: 1 - the mean over layers of d_l."""
    if len(subnet_1) != len(subnet_2) or not subnet_1:
        raise ValueError("sub-networks must list the same, non-empty set of layers")
    return 1.0 - sum(distance(a, b) for a, b in zip(subnet_1, subnet_2, strict=True)) \
        / len(subnet_1)


@dataclass
class EarlyPruningIndicator:
    """The history of sub-networks and EPI values, one per finished epoch, and the trigger."""

    tau: float
    window: int = 5  # r
    patience: int = 5  # j
    subnets: list[list[int]] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)  # EPI_t per epoch (None: t = 1)

    def observe(self, subnet: list[int]) -> float | None:
        """Record N_t for the epoch just finished; returns EPI_t."""
        earlier = self.subnets[-self.window:]
        value = (sum(similarity(subnet, s) for s in earlier) / len(earlier)) if earlier else None
        self.subnets.append(list(subnet))
        self.values.append(value)
        return value

    def fires(self) -> bool:
        """Whether the epoch just observed is the trigger epoch."""
        value = self.values[-1] if self.values else None
        previous = [v for v in self.values[:-1] if v is not None][-self.patience:]
        return value is not None and bool(previous) and value > self.tau \
            and all(value > v for v in previous)

    def state_dict(self) -> dict:
        return {"subnets": [list(s) for s in self.subnets], "values": list(self.values)}

    def load_state_dict(self, state: dict) -> None:
        self.subnets = [list(s) for s in state["subnets"]]
        self.values = list(state["values"])
