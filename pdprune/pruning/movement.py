"""Movement pruning (Sanh, Wolf, Rush, NeurIPS 2020; docs/methods.md#movement-pruning).

Every pruned weight W has a learned score S (a Parameter of its mask, trained by the model's
optimizer). The forward uses W' = W * M(S); the backward is the straight-through estimator:

    dL/dW = dL/dW' * M        dL/dS = dL/dW' * W      (M treated as the identity in S)

so S accumulates -sum_t dL/dW'_t * W_t: weights moving away from zero gain score.

- hard movement: M keeps the top v of S in each layer (Top_v), v on GMP's cubic schedule
  (budget uniform); the mask is recomputed from S at every forward.
- soft movement (`method.soft=true`): M = 1(S > tau) with one tau over all layers, chosen
  before every step so that exactly the target fraction is kept (FlooredGlobal: each layer
  keeps at least method.min_kept of its weights), plus the paper's L1 penalty on
  sigmoid(S), added to S.grad after each backward (ScorePenalty).

This module is the method's parts for the pruning core: the mask, the scorer, the rules and
the builder; nothing here owns the training loop.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from ..errors import ConfigError
from .budgets import Stateless, Uniform
from .core import Pruner
from .rules import TrainingRule
from .selection import global_total
from .structures.granularity import build_granularity
from .structures.weights import WeightStructure

BUDGETS = ("uniform", "global")


def keep_top(scores: torch.Tensor, pruned: int) -> torch.Tensor:
    """Bool mask over `scores` (any shape) keeping all but the `pruned` smallest. Among equal
    scores the earlier (flattened) positions go first, as global_budget's stable sort cuts
    them, so a layer's share of a global cut is pruned here exactly as that cut prunes it.
    One selection and a cumulative count: O(n), no sort, no host synchronisation."""
    flat = scores.detach().reshape(-1)
    if pruned <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    if pruned >= flat.numel():
        return torch.zeros_like(scores, dtype=torch.bool)
    cut = flat.kthvalue(pruned).values  # the largest score that goes
    below, tied = flat < cut, flat == cut
    tied_going = pruned - below.sum()  # how many of the scores equal to the cut go too
    goes = below | (tied & (tied.cumsum(0) <= tied_going))
    return (~goes).reshape(scores.shape)


def cut_counts(scores: list[torch.Tensor], total: int) -> list[int]:
    """Per layer, how many of the `total` smallest scores of all layers it holds (one stable
    sort: among equal scores the earlier layer and position go first, as in global_budget)."""
    if total <= 0:
        return [0] * len(scores)
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    cut = torch.argsort(flat, stable=True)[:total]
    sizes = torch.tensor([s.numel() for s in scores], device=flat.device)
    layer_of = torch.repeat_interleave(torch.arange(len(scores), device=flat.device), sizes)
    return torch.bincount(layer_of[cut], minlength=len(scores)).tolist()


def floor_of(n: int, min_kept: float) -> int:
    """Weights a layer keeps at least under a global cut: the authors' int(0.005 n) + 1."""
    return int(min_kept * n) + 1


class FlooredGlobal(Stateless):
    """One cut over the scores of all layers (one tau: exactly round(s * N) pruned), except
    that each layer keeps at least floor_of(n, min_kept) weights: a layer the cut would take
    below its floor keeps its floor, and the rest of the total is cut again over the others.
    Why: early in training the scores of some layers (a transformer's query and key) have
    hardly moved, and one tau would prune them whole (the authors' code keeps 0.5%)."""

    def __init__(self, structure, min_kept: float):
        self.structure, self.min_kept = structure, min_kept

    def caps(self) -> list[int]:
        return [n - floor_of(n, self.min_kept) for n in self.structure.sizes()]

    def check(self, sparsity: float) -> None:
        """Refuse a target the floors leave no room for, naming `sparsity`."""
        total, room = global_total(sum(self.structure.sizes()), sparsity), sum(self.caps())
        if total > room:
            raise ConfigError("sparsity", sparsity, f"soft movement keeps at least "
                              f"method.min_kept={self.min_kept} (+1 weight) of each layer: at "
                              f"most {room} of {sum(self.structure.sizes())} weights can go")

    def counts(self, sparsity: float, final: float, scores) -> list[int]:
        caps = self.caps()
        total = global_total(sum(self.structure.sizes()), sparsity)
        at_floor: dict[int, int] = {}
        while True:
            free = [i for i in range(len(caps)) if i not in at_floor]
            cut = cut_counts([scores(i) for i in free], total - sum(at_floor.values()))
            over = [i for i, c in zip(free, cut, strict=True) if c > caps[i]]
            if not over:
                counts = dict(zip(free, cut, strict=True)) | at_floor
                return [counts[i] for i in range(len(caps))]
            at_floor |= {i: caps[i] for i in over}


class _StraightThrough(torch.autograd.Function):
    """W' = W * M with M a 0/1 function of S: dL/dW = g * M, dL/dS = g * W (the paper's STE)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor):
        ctx.save_for_backward(weight, keep)
        ctx.scores_dtype = scores.dtype
        return weight * keep

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, keep = ctx.saved_tensors
        return grad * keep, (grad * weight).to(ctx.scores_dtype), None


class MovementMask(nn.Module):
    """The mask parametrization of one layer: holds its scores S and the count `pruned` the
    budget sets; keeps the largest n - pruned of S, recomputed from S at every forward (S
    changes every step). With pruned = 0 nothing is masked, but S still learns."""

    needs_scores = False  # it ranks its own scores; the pruner only sets the count

    def __init__(self, weight: torch.Tensor, init: float, score_lr: float | None):
        super().__init__()
        self.scores = nn.Parameter(torch.full_like(weight, init, dtype=torch.float32))
        # read by build_optimizer (train/optim.py): the scores' own lr, and no weight decay
        self.scores.optim_overrides = {"weight_decay": 0.0,
                                       **({"lr": score_lr} if score_lr is not None else {})}
        self.pruned = 0

    def keep(self) -> torch.Tensor:
        return keep_top(self.scores, self.pruned)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(weight, self.scores, self.keep())

    def set(self, count: int, scores: torch.Tensor | None = None) -> None:
        self.pruned = count

    @torch.no_grad()
    def masked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.keep()

    @torch.no_grad()
    def hard(self, weight: torch.Tensor) -> torch.Tensor:
        return self.keep()

    @torch.no_grad()
    def baked(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.keep()  # W * M, M binary

    def ties(self, weight: torch.Tensor) -> int:
        return 0  # ties on S are broken by position: exactly the budget is kept


class MovementScorer:
    """The scores S of each layer, (1, n); larger is kept (what a global budget cuts)."""

    def __init__(self, structure: WeightStructure):
        self.structure = structure

    def __call__(self, i: int) -> torch.Tensor:
        return self.structure.masks[i].scores.detach().reshape(1, -1)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RecountEveryStep(TrainingRule):
    """A global cut over scores that move every step: one tau over all layers, recomputed
    before every step (and before finalize) from the current S, so that exactly
    round(s(t) * total) weights are masked. Stateless: the counts follow from S and s(t)."""

    def before_step(self, pruner, step: int) -> None:
        if pruner.sparsity > 0:
            pruner.set_sparsity(pruner.sparsity)

    def before_finalize(self, pruner) -> None:
        self.before_step(pruner, pruner.step)


class ScorePenalty(TrainingRule):
    """Soft movement's penalty R(S) = lambda * (1/L) sum_l mean_ij sigmoid(S^l_ij) (the paper's
    L1 on sigmoid(S), normalised as its released code does), added to the gradient:
    dR/dS^l_ij = lambda / (L n_l) * sigmoid(S)(1 - sigmoid(S)). With `ramp`, lambda follows
    the schedule: lambda * s(t) / s_final (0 until pruning starts)."""

    def __init__(self, strength: float, ramp: bool):
        self.strength, self.ramp = strength, ramp

    def lam(self, pruner) -> float:
        if not self.ramp:
            return self.strength
        final = pruner.schedule.target
        return self.strength * pruner.sparsity / final if final else 0.0

    @torch.no_grad()
    def after_backward(self, pruner, step: int) -> None:
        lam = self.lam(pruner)
        masks = pruner.structure.masks
        if lam == 0 or not masks:
            return
        for mask in masks:
            scores = mask.scores
            sig = torch.sigmoid(scores)
            grad = sig.mul_(1 - sig).mul_(lam / (len(masks) * scores.numel()))
            if scores.grad is None:
                scores.grad = grad
            else:
                scores.grad.add_(grad)


def budget_kind(method: DictConfig) -> str:
    """method.budget, or when null (movement's default) the paper's: uniform Top_v per layer
    for hard movement, one global tau for soft movement."""
    kind = method.get("budget")
    if kind is not None:
        return kind
    return "global" if method.get("soft", False) else "uniform"


def movement_pruner(cfg: DictConfig, targets: list[tuple[str, nn.Module]], schedule,
                    steps_per_epoch: int) -> Pruner:
    method = cfg.method
    structure = WeightStructure(
        targets, build_granularity(cfg.granularity), None,
        make_mask=lambda weight, _: MovementMask(weight, method.score_init, method.score_lr))
    kind = budget_kind(method)
    structure.check(schedule.target, kind)
    rules: list[TrainingRule] = []
    if kind == "global":
        budget = FlooredGlobal(structure, method.min_kept)
        budget.check(schedule.target)
        rules.append(RecountEveryStep())
    else:
        budget = Uniform(structure)
    if method.soft:
        rules.append(ScorePenalty(method.l1, method.l1_ramp))
    return Pruner(structure, MovementScorer(structure), budget, schedule, steps_per_epoch,
                  rules=rules).attach()


def check_config(cfg: DictConfig) -> None:
    """method=movement's keys, as one-line errors naming the key."""
    method = cfg.method
    if cfg.granularity.name != "unstructured":
        raise ConfigError("granularity", cfg.granularity.name, "method=movement learns one "
                          "score per weight: needs granularity=unstructured")
    if method.budget is not None and method.budget not in BUDGETS:
        raise ConfigError("method.budget", method.budget,
                          f"must be one of {', '.join(BUDGETS)} (or null: the paper's)")
    if method.score_lr is not None and method.score_lr <= 0:
        raise ConfigError("method.score_lr", method.score_lr,
                          "must be positive (or null: optim.lr)")
    if not 0 <= method.min_kept < 1:
        raise ConfigError("method.min_kept", method.min_kept, "must be in [0, 1)")
    if method.l1 < 0:
        raise ConfigError("method.l1", method.l1, "must be >= 0")
    if cfg.schedule.name not in ("cubic", "oneshot", "pdp"):
        raise ConfigError("schedule", cfg.schedule.name, "method=movement needs a schedule "
                          "of the target sparsity: cubic (the paper's), oneshot or pdp")
