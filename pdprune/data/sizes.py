"""How many samples a split holds out: `dataset.val_size` / `dataset.test_size` are a fraction
(< 1) of the samples or a count (>= 1).

The default counts were made for the full sets (5,000 of MNIST's 60,000): on a user's smaller
set in the same format such a count would leave little or nothing to train on. So a count
that would take more than half of the samples is capped at a tenth of them (the cap is
logged); a fraction always scales. No torch here: the start-up checks use this too.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError

log = logging.getLogger("pdprune")

CAP_ABOVE = 0.5  # a count taking more than this fraction of the samples is capped...
CAP_TO = 0.1  # ...to this fraction of them


def shown(value: float) -> str:
    """A size as the user typed it: 5000, not 5000.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


def held_out(value: float, n: int, key: str, where: str = "", quiet: bool = False) -> int:
    """The number of the `n` samples that `key` = `value` holds out. A positive fraction holds
    out at least one. ConfigError (one line) when the value is negative or nothing would be
    left to train on; `where` names the files in that message."""
    if value < 0:
        raise ConfigError(key, shown(value), "must be >= 0 (a fraction < 1 or a count)")
    if value < 1:
        count = max(1, round(value * n)) if value > 0 else 0
    else:
        count = int(value)
        if count > CAP_ABOVE * n:
            capped = max(1, round(CAP_TO * n))
            if not quiet:
                log.warning("%s=%s is more than half of the %d samples%s: holding out %d (%d%%) "
                            "instead", key, shown(value), n, f" in {where}" if where else "",
                            capped, round(100 * CAP_TO))
            count = capped
    if count >= n:
        raise ConfigError(key, shown(value), f"leaves no training samples ({n} in "
                          f"{where or 'the dataset'})")
    return count


def split_sizes(n: int, sizes: dict[str, float], where: str = "",
                quiet: bool = False) -> dict[str, int]:
    """held_out for several keys of the same `n` samples (e.g. val_size and test_size); what
    they take together must leave some to train on."""
    counts = {key: held_out(value, n, key, where, quiet) for key, value in sizes.items()}
    if counts and sum(counts.values()) >= n:
        key = next(reversed(counts))
        raise ConfigError(key, shown(sizes[key]), f"with {', '.join(k for k in counts if k != key)}"
                          f" leaves no training samples ({n} in {where or 'the dataset'})")
    return counts
