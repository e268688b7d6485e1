"""STR (Kusupati et al., ICML 2020, "Soft Threshold Weight Reparameterization for Learnable
Sparsity"); docs/methods.md#str.

Every target layer trains through its soft-thresholded weight

    w_eff = sign(w) * relu(|w| - sigmoid(s))

with ONE learnable scalar s per layer, trained by the same optimizer as the weights (weight
decay on s as on the weights: decay pulls s towards 0, raising the threshold). Gradients are
plain autograd through sign and relu, as the paper's code: dw_eff/dw = 1[|w| > sigmoid(s)],
dw_eff/ds = -sigmoid'(s) sign(w) 1[|w| > sigmoid(s)]. Sparsity is learned, not set: `sparsity`
is where the thresholds freeze (method.freeze_at_target, a choice) and what the metrics report
as the target. The exported weights are w_eff itself (the shrunk values, not w * mask).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import ConfigError, PdpruneError
from .budgets import Stateless
from .rules import TrainingRule
from .selection import uniform_budget
from .snip import check_at_init

log = logging.getLogger("pdprune")


def check_config(cfg) -> None:
    """method=str's keys, as one-line errors naming the key."""
    decay = cfg.method.s_weight_decay
    if decay is not None and decay < 0:
        raise ConfigError("method.s_weight_decay", decay, "must be >= 0 (or null: the "
                          "optimizer's weight decay)")
    if cfg.granularity.name != "unstructured":
        raise ConfigError("granularity", cfg.granularity.name, "method=str thresholds single "
                          "weights: needs granularity=unstructured")
    check_at_init(cfg)


class SoftThresholdMask(nn.Module):
    """The parametrization of one layer's weight, holding its threshold parameter s: a
    Parameter of the model, so in model.parameters() (the optimizer trains it) and in its
    state_dict (checkpoints restore it)."""

    needs_scores = False  # the threshold is learned: the pruner's counts do not move it

    def __init__(self, weight: torch.Tensor, s_init: float, weight_decay: float | None):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(s_init), device=weight.device))
        if weight_decay is not None:  # read by build_optimizer (train/optim.py): own group
            self.s.optim_overrides = {"weight_decay": float(weight_decay)}
        self.pruned = 0  # the core's count: STR's are what the threshold prunes

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.sign(weight) * torch.relu(weight.abs() - torch.sigmoid(self.s))

    @torch.no_grad()
    def threshold(self) -> float:
        return float(torch.sigmoid(self.s))

    def set(self, count: int, scores: torch.Tensor | None = None) -> None:
        pass  # nothing to set: the threshold is trained

    def masked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight

    @torch.no_grad()
    def hard(self, weight: torch.Tensor) -> torch.Tensor:
        """Kept: w_eff != 0, i.e. |w| > sigmoid(s) (the forward's own zeros)."""
        return self(weight) != 0

    def ties(self, weight: torch.Tensor) -> int:
        return 0  # the forward decides every weight: nothing is left to a tie

    @torch.no_grad()
    def baked(self, weight: torch.Tensor) -> torch.Tensor:
        """What the layer computed with: the shrunk weights w_eff."""
        return self(weight)


class TargetCounts(Stateless):
    """round(s * n) per layer: the target the metrics report while STR's thresholds learn.
    The masks ignore it; at the end the counts become what the thresholds prune."""

    def __init__(self, structure):
        self.structure = structure

    def counts(self, sparsity: float, final: float, scores) -> list[int]:
        return uniform_budget(self.structure.sizes(), sparsity)


class LearnedThresholds(TrainingRule):
    """STR's thresholds in training. With `freeze` (method.freeze_at_target, a choice, not the
    paper's): before each step, once the weights the thresholds zero reach `target` of all
    prunable weights, s stops changing: from that step on its gradient is dropped after every
    backward, and an optimizer skips a parameter without gradient (no step, no momentum, no
    weight decay). At the end the pruner's counts become what each threshold prunes."""

    def __init__(self, structure, target: float, freeze: bool):
        self.structure, self.target, self.freeze = structure, target, freeze
        self.frozen_at: int | None = None  # the first step s did not change
        self.frozen_s: list[float] | None = None  # s then, to check it stayed
        self.final: dict[str, float] = {}  # each layer's threshold sigmoid(s) at the end

    @property
    def thresholds(self) -> list[nn.Parameter]:
        return [mask.s for mask in self.structure.masks]

    def before_step(self, pruner, step: int) -> None:
        if not self.freeze or self.frozen_at is not None:
            return
        achieved = pruner.achieved_sparsity()  # one host read a step, until frozen
        if achieved >= self.target:
            self.frozen_at, self.frozen_s = step, [float(s.detach()) for s in self.thresholds]
            log.info("STR: thresholds frozen before step %d at sparsity %.4f (target %.4f)",
                     step, achieved, self.target)

    def after_backward(self, pruner, step: int) -> None:
        if self.frozen_at is not None:
            for s in self.thresholds:
                s.grad = None

    def before_finalize(self, pruner) -> None:
        now = [float(s.detach()) for s in self.thresholds]
        if self.frozen_s is not None and now != self.frozen_s:
            raise PdpruneError(f"method=str: the thresholds changed after they froze at step "
                               f"{self.frozen_at}; in your own loop call "
                               "pruning.after_backward() after each backward")
        layers = list(zip(self.structure.layers, self.structure.masks, strict=True))
        pruner.counts = [int((~mask.hard(layer.original)).sum()) for layer, mask in layers]
        self.final = {layer.name: mask.threshold() for layer, mask in layers}

    def summary(self) -> dict:
        """summary.json's `str` section: when the thresholds froze (null: never) and where
        they ended."""
        return {"str": {"target": self.target, "frozen_at_step": self.frozen_at,
                        "thresholds": self.final}}

    def state_dict(self) -> dict:
        return {"frozen_at": self.frozen_at, "frozen_s": self.frozen_s}

    def load_state_dict(self, state: dict) -> None:
        self.frozen_at, self.frozen_s = state["frozen_at"], state["frozen_s"]
