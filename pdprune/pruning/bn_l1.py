"""Network slimming's sparsity term on BN scales (Liu et al., ICCV 2017), as Early-Bird trains
with it (docs/methods.md#early-bird): the subgradient of strength * sum |gamma|, added to every
BatchNorm scale's gradient after each backward, exactly as the authors' `updateBN()`:

    gamma.grad += strength * sign(gamma)

Every BatchNorm of the model gets it (theirs loop over all of them), not only those of the
prunable groups. While the network is dense only, unless `when_pruned` (the authors' retraining
script keeps it on: "we keep sparsity regularization for underlying iterative pruning").
"""

from __future__ import annotations

import torch
from torch import nn

from .importance import BATCH_NORMS, _param
from .rules import TrainingRule


class BNScaleL1(TrainingRule):
    def __init__(self, model: nn.Module, strength: float, when_pruned: bool = False):
        self.model, self.strength, self.when_pruned = model, strength, when_pruned

    @torch.no_grad()
    def after_backward(self, pruner, step: int) -> None:
        if self.strength == 0 or (pruner.sparsity > 0 and not self.when_pruned):
            return
        for module in self.model.modules():
            if isinstance(module, BATCH_NORMS) and module.affine:
                gamma = _param(module, "weight")  # what the optimizer updates, under a mask
                if gamma.grad is not None:
                    gamma.grad.add_(self.strength * torch.sign(gamma.detach()))
