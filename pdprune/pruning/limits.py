"""Whether a sparsity target can be met, checked before the first step.

Pure functions of layer / group sizes and the config's values, so that they can run on a model
built on any device (the pruner's constructors call them; a preflight can too). Each computes
the budget with the same function the pruner uses (selection.py) and refuses a target that
would leave a prunable layer with no weight, or that asks for more channels than the coupled
groups can give, naming `sparsity` and the largest value that can be met.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from .selection import global_total, kept_options, uniform_budget


def largest_accepted(accepts: Callable[[float], bool], reachable: float) -> float:
    """`reachable` to 4 decimals, stepped down until `accepts` takes it: a value the user can
    type back. Budgets round counts, so the printed value itself must be checked."""
    value = round(reachable, 4)
    while value > 0 and not accepts(value):
        value = round(value - 1e-4, 4)
    return max(value, 0.0)


def check_weight_budget(layers: list[tuple[str, int]], sparsity: float, budget: str) -> None:
    """Unstructured budgets over `layers` ((name, prunable units)): every layer keeps at least
    one unit. uniform: each layer's own round(sparsity * n) < n; global: one cut of
    round(sparsity * total) units leaves at least one per layer only if it is at most
    total - layers (which layer the cut empties depends on the trained weights; the method
    checks that when it cuts)."""
    if not layers or sparsity == 0:
        return
    sizes = [n for _, n in layers]
    if budget == "global":
        total, most = sum(sizes), sum(sizes) - len(sizes)
        if global_total(total, sparsity) <= most:
            return
        best = largest_accepted(lambda s: global_total(total, s) <= most, most / total)
        raise ConfigError("sparsity", sparsity, f"method.budget=global would prune "
                          f"{global_total(total, sparsity)} of {total} prunable weights; at most "
                          f"{best} keeps a weight in each of the {len(sizes)} layers "
                          f"({most} of {total})")
    emptied = [(name, n) for (name, n), pruned in zip(layers, uniform_budget(sizes, sparsity),
                                                      strict=True) if pruned >= n]
    if not emptied:
        return
    name, n = emptied[0]
    smallest = min(sizes)
    best = largest_accepted(lambda s: all(p < m for p, m in zip(uniform_budget(sizes, s), sizes,
                                                                strict=True)),
                            (smallest - 1) / smallest)
    raise ConfigError("sparsity", sparsity, f"method.budget=uniform would prune all {n} weights "
                      f"of {name}; at most {best} keeps a weight in every layer (the smallest "
                      f"has {smallest})")


def max_pruned_channels(sizes: list[int], round_to: int) -> int:
    """Channels that can go at most: every group keeps its smallest allowed count (one block of
    round_to channels, or the whole of a group smaller than a block; round_kept's rule)."""
    return sum(n - kept_options(n, round_to)[0] for n in sizes)


def target_channels(sizes: list[int], sparsity: float, budget: str) -> int:
    """Channels the budget asks to prune before rounding to blocks (global: one cut)."""
    if budget == "global":
        return global_total(sum(sizes), sparsity)
    return sum(uniform_budget(sizes, sparsity))


def check_channel_budget(sizes: list[int], sparsity: float, budget: str, round_to: int) -> None:
    """granularity=channel: the target (a fraction of all coupled channels) must fit in what the
    groups can give while each keeps at least one channel, or one block of round_to."""
    if not sizes or sparsity == 0:
        return
    total, most = sum(sizes), max_pruned_channels(sizes, round_to)
    if target_channels(sizes, sparsity, budget) <= most:
        return
    best = largest_accepted(lambda s: target_channels(sizes, s, budget) <= most, most / total)
    keeps = "a channel" if round_to <= 1 else \
        f"at least {round_to} channels (granularity.round_to={round_to}), or all of a " \
        "smaller group"
    raise ConfigError("sparsity", sparsity, f"granularity=channel can remove at most {best} of "
                      f"channels ({most} of {total}: every coupled group keeps {keeps})")


def check_blocks(removable: int, layers_to_remove: int | None, model: str = "the model") -> None:
    """method=layerprune: the model has a removable block, and at least one stays."""
    if removable == 0:
        raise ConfigError("method", "layerprune", f"{model} has no removable block "
                          "(residual blocks of unchanged shape, VGG convs, encoder layers)")
    if layers_to_remove is not None and layers_to_remove >= removable:
        raise ConfigError("method.layers_to_remove", layers_to_remove, f"{model} has "
                          f"{removable} removable blocks and one must stay: at most "
                          f"{removable - 1}")


def check_cut(layers: list[tuple[str, int]], pruned: list[int], sparsity: float) -> None:
    """A global cut once the weights are known (the end of warm-up, or each magnitude update):
    which layer it empties depends on the trained magnitudes, so only now can it be checked."""
    for (name, n), count in zip(layers, pruned, strict=True):
        if count >= n:
            raise ConfigError("sparsity", sparsity, f"the global cut (method.budget=global) "
                              f"prunes all {n} weights of {name}; lower sparsity or set "
                              "method.budget=uniform")
