"""Per-layer densities for sparse-from-the-start training (docs/methods.md#set-and-rigl).

- erk (Erdos-Renyi-Kernel, Evci et al. 2020): the density of layer l is proportional to
  sum(shape_l) / prod(shape_l) ((n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w) for a conv),
  scaled by ONE epsilon so that the layers keep (1 - s) N weights together. A layer whose
  density would exceed 1 is made dense and epsilon recomputed for the others, the largest
  first, as the RigL code does (sparse_utils.get_sparsities).
- uniform: every layer at density 1 - s.

The kept counts are then whole numbers summing to EXACTLY round((1 - s) N): each layer's
floor, and the weights left over go one each to the layers with the largest fractional parts
(ties: the earlier layer).
"""

from __future__ import annotations

import math

from ..errors import ConfigError

DISTRIBUTIONS = ("erk", "uniform")


def densities(shapes: list[tuple[int, ...]], sparsity: float, distribution: str) -> list[float]:
    """The fraction of each layer's weights kept at `sparsity` (1.0: the layer stays dense)."""
    if distribution == "uniform" or sparsity == 0:
        return [1.0 - sparsity] * len(shapes)
    sizes = [math.prod(shape) for shape in shapes]
    raw = [sum(shape) / n for shape, n in zip(shapes, sizes, strict=True)]
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense]
        # what the sparse layers may keep: (1 - s) N minus the dense layers' every weight
        budget = (1.0 - sparsity) * sum(sizes) - sum(sizes[i] for i in dense)
        epsilon = budget / sum(raw[i] * sizes[i] for i in sparse)
        largest = max(raw[i] for i in sparse)
        if largest * epsilon <= 1.0:
            break
        dense |= {i for i in sparse if raw[i] == largest}
    return [1.0 if i in dense else epsilon * raw[i] for i in range(len(shapes))]


def kept_counts(shapes: list[tuple[int, ...]], sparsity: float, distribution: str,
                names: list[str] | None = None) -> list[int]:
    """Weights kept per layer: the densities in whole numbers, round((1 - s) N) in total.
    Raises ConfigError naming `sparsity` when a layer would keep no weight."""
    sizes = [math.prod(shape) for shape in shapes]
    wanted = [d * n for d, n in zip(densities(shapes, sparsity, distribution), sizes,
                                    strict=True)]
    kept = [min(n, math.floor(w)) for w, n in zip(wanted, sizes, strict=True)]
    left = round((1.0 - sparsity) * sum(sizes)) - sum(kept)
    # the largest remainders first; a full layer takes no more
    order = sorted((i for i in range(len(kept)) if kept[i] < sizes[i]),
                   key=lambda i: (-(wanted[i] - kept[i]), i))
    for i in order[:max(0, left)]:
        kept[i] += 1
    empty = [i for i, k in enumerate(kept) if k == 0]
    if empty:
        name = names[empty[0]] if names else f"layer {empty[0]}"
        raise ConfigError("sparsity", sparsity, f"method.distribution={distribution} keeps no "
                          f"weight of {name} ({sizes[empty[0]]} weights); lower sparsity")
    return kept
