"""Nested config dicts as one level of dotted keys (`method.tau`): what a resumed run compares
and what the loggers record as params."""

from __future__ import annotations


def flatten(tree: object, prefix: str = "", sep: str = ".") -> dict[str, object]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists are values, an empty dict leaves no key."""
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}{sep}", sep))
        return out
    return {prefix[:-len(sep)]: tree} if prefix else {}
