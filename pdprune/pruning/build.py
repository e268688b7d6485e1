"""Config -> driver: every method is a choice of structure, scorer, mask, budget and schedule.

    method      structure (granularity)       scorer      mask    budget            schedule
    dense       the targets, no masks         -           -       -                 -
    magnitude   weights / N:M / channels      magnitude   binary  method.budget     oneshot
    gmp         weights / N:M / channels      magnitude   binary  method.budget     cubic
    random      weights / N:M / channels      random      binary  method.budget     oneshot
    pdp         weights / N:M / channels      magnitude   soft    fixed once, then  pdp
                                                                  scaled
    layerprune  blocks                        criterion   -       layers_to_remove  oneshot
                                                                  or latency
    movement    weights                       scores S    top S   uniform (hard)    cubic
                (movement.py)                 (learned)           global (soft)
    set, rigl   weights (unstructured)        random      binary  ERK / uniform     from_start
                + drop and regrow (random / |dense grad|; dynamic_sparse.py, regrowth.py)
    granet      weights (unstructured)        magnitude   binary  method.budget     cubic
                + drop and regrow by |dense grad| at each mask update
    snip        weights / N:M                 |g w| at    binary  method.budget     from_start
                (snip.py)                     init                (global)
    str         weights (unstructured)        -           sign(w) relu(|w| - sigmoid(s)),
                (soft_threshold.py)                       s learned per layer; from_start
    schedule=epi (channels): any of the above, the budget planned by the indicator.
    schedule=early_bird (channels): binary masks, counts and channels from the ticket, plus
    an L1 term on BN scales while dense (early_bird_schedule.py, bn_l1.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from omegaconf import DictConfig
from torch import nn

from ..errors import PdpruneError
from ..models.blocks import find_blocks
from ..models.text import TextClassifier
from .bn_l1 import BNScaleL1
from .budgets import (
    BlockCount,
    FixedOnce,
    Global,
    Nothing,
    Pattern,
    Planned,
    Uniform,
    WithinLatency,
)
from .core import Pruner
from .dynamic_sparse import METHODS as DYNAMIC_SPARSE
from .dynamic_sparse import check_erk, dynamic_sparse_pruner
from .early_bird_schedule import TicketScorer, check_bn_groups
from .limits import check_blocks, check_weight_budget
from .movement import budget_kind, movement_pruner
from .schedules import build_schedule
from .scorers import MagnitudeScorer, RandomScorer
from .snip import SaliencyScorer
from .soft_threshold import LearnedThresholds, SoftThresholdMask, TargetCounts
from .structures.channels import ChannelStructure, check_groups
from .structures.coupled import PRODUCERS, ChannelGroup, find_channel_groups
from .structures.granularity import build_granularity
from .structures.heads import find_sites, transformer_groups
from .structures.removable_blocks import BlockImportance, BlockStructure
from .structures.weights import DenseStructure, WeightStructure
from .targets import is_depthwise, select_targets

SOFT_MASKS = ("pdp",)  # methods whose masks are soft until hardening
PLANNED = ("epi", "early_bird")  # schedules that plan the counts of one cut over all groups


def mask_labels(method: str, harden_at: str = "end") -> dict[str, str]:
    """The masks behind each reported accuracy. `final` (summary.json's accuracy): hardened,
    pruned units zero or removed. `last_epoch` (metrics.jsonl's val_top1): what training
    used: PDP's soft masks until it hardens (method.harden_at), binary masks otherwise.
    Methods without masks (dense, layerprune): none."""
    if method in ("dense", "layerprune"):
        return {"final": "none", "last_epoch": "none"}
    soft = method in SOFT_MASKS and harden_at == "end"
    return {"final": "hardened", "last_epoch": "soft" if soft else "hard"}


def build_pruner(cfg: DictConfig, model: nn.Module, steps_per_epoch: int,
                 input_shape: tuple[int, ...] | None = None,
                 train_batches: Callable[[], Iterable] | None = None) -> Pruner:
    """The driver for cfg.method / cfg.granularity / cfg.schedule, attached to `model`.
    granularity=channel traces the model on a zero batch of `input_shape` (one sample's shape);
    method=layerprune reads `train_batches()` (one pass of training data) for gradient criteria
    and measures latency on inputs of `input_shape`; method=snip reads its first batches for
    the saliency of the initial weights."""
    method = cfg.method
    schedule = build_schedule(cfg.schedule, steps_per_epoch)
    if method.name == "layerprune":
        choose = WithinLatency(method.latency_budget, method.latency_batch, input_shape) \
            if method.latency_budget else BlockCount(method.layers_to_remove)
        structure = BlockStructure(model, BlockImportance(
            method.criterion, train_batches, method.importance_batches), choose)
        return Pruner(structure, MagnitudeScorer(structure), Nothing(structure), schedule,
                      steps_per_epoch).attach()
    targets = select_targets(model, method.targets)
    if method.name == "dense":
        structure = DenseStructure(targets)
        return Pruner(structure, MagnitudeScorer(structure), Nothing(structure), schedule,
                      steps_per_epoch)
    if method.name == "movement":
        return movement_pruner(cfg, targets, schedule, steps_per_epoch)
    if method.name in DYNAMIC_SPARSE:  # SET, RigL, GraNet: drop and regrow (dynamic_sparse.py)
        return dynamic_sparse_pruner(cfg, targets, schedule, steps_per_epoch)
    if method.name == "str":  # learned thresholds (soft_threshold.py)
        return str_pruner(cfg, targets, schedule, steps_per_epoch)
    tau = method.tau if method.name in SOFT_MASKS else None
    if cfg.granularity.name == "channel":
        groups, left_dense = channel_groups(model, targets, input_shape)
        structure = ChannelStructure(model, groups, left_dense, tau, cfg.granularity.round_to,
                                     input_shape)
    else:
        structure = WeightStructure(targets, build_granularity(cfg.granularity), tau)
    is_epi = cfg.schedule.name in PLANNED
    # one cut over all groups (EPI's sub-network, Early-Bird's mask), whatever method.budget says
    structure.check(schedule.target, "global" if is_epi else method.get("budget", "uniform"))
    budget = Pattern(structure) if structure.fixed_per_row is not None \
        else Global(structure) if method.get("budget") == "global" else Uniform(structure)
    if tau is not None:
        budget = FixedOnce(budget)  # PDP: per-group budgets set once, at the end of warm-up
    if is_epi:
        budget = Planned(schedule.watch(structure), budget)
    scorer = RandomScorer(structure, method.seed) if method.name == "random" \
        else MagnitudeScorer(structure)
    if method.name == "snip":  # |g w| of the initial weights, before any mask (snip.py)
        scorer = SaliencyScorer(structure, model, train_batches, method.batches)
    rules = []
    if cfg.schedule.name == "early_bird":
        scorer, rules = early_bird_parts(schedule, scorer, model)
    return Pruner(structure, scorer, budget, schedule, steps_per_epoch,
                  cfg.trainer.get("compact_when_final", False),
                  method.get("harden_at", "end") == "ramp_end", rules).attach()


def early_bird_parts(schedule, scorer, model: nn.Module) -> tuple[TicketScorer, list[BNScaleL1]]:
    """Early-Bird: the binary masks keep the ticket's channels once it is drawn; the BN scales
    train with their L1 term (docs/methods.md#early-bird)."""
    return TicketScorer(schedule, scorer), [BNScaleL1(model, schedule.l1, schedule.l1_when_pruned)]


def str_pruner(cfg: DictConfig, targets: list[tuple[str, nn.Module]], schedule,
               steps_per_epoch: int) -> Pruner:
    """STR: each layer's weight soft-thresholded by its learned sigmoid(s); the counts report
    the target until the end, then what the thresholds prune (docs/methods.md#str)."""
    method = cfg.method
    structure = WeightStructure(
        targets, build_granularity(cfg.granularity), None,
        make_mask=lambda weight, _: SoftThresholdMask(weight, method.s_init,
                                                      method.s_weight_decay))
    rule = LearnedThresholds(structure, schedule.target, method.freeze_at_target)
    return Pruner(structure, MagnitudeScorer(structure), TargetCounts(structure), schedule,
                  steps_per_epoch, rules=[rule]).attach()


def channel_groups(model: nn.Module, targets: list[tuple[str, nn.Module]],
                   input_shape: tuple[int, ...]) -> tuple[list[ChannelGroup], list[str]]:
    """Targets become roots of coupled channel groups; a group touching the output channels of
    any other conv / linear (the classifier, excluded layers) stays dense. Depthwise convs are
    never roots but join their producer's group. In a transformer the groups are its attention
    heads and FFN neurons (structures/heads.py). Returns (groups, roots left dense)."""
    roots = [name for name, _ in targets]
    sites = find_sites(model)
    if sites or isinstance(model, TextClassifier):  # a transformer: heads and FFN neurons
        groups = transformer_groups(model, sites, roots)
        if not groups:
            raise PdpruneError(f"granularity=channel: no attention heads or FFN layers among "
                               f"the targets of {type(model).__name__} (known: models/vit.py, "
                               "BERT-style encoders); use granularity=unstructured or nm")
        covered = {m.name for g in groups for m in g.members}
        return groups, [name for name in roots if name not in covered]
    ignored = [name for name, m in model.named_modules() if isinstance(m, PRODUCERS)
               and name not in roots and not is_depthwise(m)]
    param = next(model.parameters())
    example = torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype)
    groups = find_channel_groups(model, example, roots, ignored)
    covered = {p.name for g in groups for p in g.producers}
    return groups, [name for name in roots if name not in covered]


def check_targets(cfg: DictConfig, model: nn.Module,
                  input_shape: tuple[int, ...] | None = None) -> None:
    """The budget checks that build_pruner makes, without attaching anything: for a preflight,
    on a model built on the meta device. Raises ConfigError naming `sparsity` (or
    method.layers_to_remove) with the largest value that can be met."""
    name = cfg.method.name
    if name in ("dense", "str"):  # str: sparsity is learned, there is no budget to meet
        return
    if name == "layerprune":
        check_blocks(len(find_blocks(model)), None if cfg.method.latency_budget
                     else cfg.method.layers_to_remove, type(model).__name__)
        return
    targets = select_targets(model, cfg.method.targets)
    target = cfg.schedule.target
    if cfg.granularity.name == "channel":
        groups, _ = channel_groups(model, targets, input_shape)
        kind = "global" if cfg.schedule.name in PLANNED else cfg.method.get("budget", "uniform")
        check_groups(groups, target, kind, cfg.granularity.round_to)
        if cfg.schedule.name == "early_bird":
            check_bn_groups(groups, dict(model.named_modules()))
        return
    if name in ("set", "rigl"):  # the ERK (or uniform) densities
        check_erk(cfg, targets)
        return
    granularity = build_granularity(cfg.granularity)
    if granularity.pruned_per_row is None:
        check_weight_budget([(n, granularity.units_per_row(m.weight)) for n, m in targets
                             if granularity.supports(m.weight)], target,
                            budget_kind(cfg.method))
