"""Zhu & Gupta's small-dense baseline: the same architecture made narrower until its (dense)
parameter count equals the non-zeros of the wide model pruned to a sparsity."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import ConfigError


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pruned_nonzeros(model: nn.Module, prunable: list[nn.Module], sparsity: float) -> int:
    """Non-zero parameters left when `sparsity` of the prunable weights are zero (biases, BN
    and unpruned layers stay dense)."""
    weights = sum(m.weight.numel() for m in prunable)
    return parameter_count(model) - round(sparsity * weights)


def matched_width(model_cfg: DictConfig, build: Callable[[DictConfig], nn.Module],
                  prunable: Callable[[nn.Module], list[nn.Module]], sparsity: float,
                  iterations: int = 30, grid: int = 2000) -> tuple[float, int, int]:
    """The width (at most model_cfg.width) at which build(cfg) has as many parameters as
    build(model_cfg) has non-zeros at `sparsity`. Widths round to whole channels, so the
    counts match to a channel's worth (the closest on a grid of width/`grid` steps around
    the bisection's answer): returns (width, its params, the target)."""
    if "width" not in model_cfg:
        raise ConfigError("model.match_nonzeros", sparsity,
                          f"model={model_cfg.name} has no width to narrow")
    wide = build(model_cfg)
    target = pruned_nonzeros(wide, prunable(wide), sparsity)
    narrow = lambda width: parameter_count(build(_with_width(model_cfg, width)))  # noqa: E731
    low, high = 0.0, float(model_cfg.width)  # parameter counts grow with the width, roughly:
    for _ in range(iterations):  # layers round to whole channels at different widths
        mid = (low + high) / 2
        low, high = (mid, high) if narrow(mid) < target else (low, mid)
    # so search the neighbourhood on a fine grid for the closest count
    step = float(model_cfg.width) / grid
    nearby = {round(min(max(step, high + k * step), model_cfg.width), 9)
              for k in range(-grid // 8, grid // 8 + 1)}
    counts = {w: narrow(w) for w in sorted(nearby)}
    width = min(counts, key=lambda w: (abs(counts[w] - target), -w))
    return width, counts[width], target


def _with_width(model_cfg: DictConfig, width: float) -> DictConfig:
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    cfg.update(width=width, checkpoint=None, match_nonzeros=None)
    return OmegaConf.create(cfg)
