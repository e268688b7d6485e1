"""Scorers: the importance of every unit of a mask group, (rows, units) or (units,); larger
is kept. Binary masks keep the largest scores; global budgets cut them
(docs/methods.md#gradual-magnitude-pruning, #importance-criteria).

- magnitude: |w| of what the layer sees (a unit pruned by a binary mask scores 0, so it never
  comes back); for channels the L2 norm of every weight that produces the channel.
- random: fixed uniform scores, drawn once per group from `seed` (nested masks as the target
  rises): the control.
"""

from __future__ import annotations

import torch


class MagnitudeScorer:
    def __init__(self, structure):
        self.structure = structure

    def __call__(self, i: int) -> torch.Tensor:
        return self.structure.magnitudes(i)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RandomScorer:
    def __init__(self, structure, seed: int):
        self.structure, self.seed = structure, seed
        self._scores: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, i: int) -> torch.Tensor:
        if i not in self._scores:  # a generator per group: the same draw whatever asks first
            like = self.structure.magnitudes(i)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
            self._scores[i] = torch.rand(like.shape, generator=gen).to(like.device)
        return self._scores[i]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
