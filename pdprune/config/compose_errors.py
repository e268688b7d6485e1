"""Hydra's and OmegaConf's composition errors, reduced to one line that names the key."""

from __future__ import annotations

import dataclasses
import difflib
import re

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def did_you_mean(full_key: str, schema: object) -> str:
    """' (did you mean <the closest key of schema>?)', or '' when none is close."""
    if not dataclasses.is_dataclass(schema):
        return ""
    prefix, _, key = full_key.rpartition(".")
    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(schema)], n=1)
    return f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""


def describe(exc: Exception) -> str:
    """One line for a failed composition: '<key>[=<value>]: <what is wrong>'."""
    if isinstance(exc, MissingConfigException) and exc.options is not None:
        missing = re.search(r"Could not find '([^']+)'", str(exc))
        option = missing.group(1) if missing else str(exc.missing_cfg_file)
        group, _, name = option.rpartition("/")
        choices = ", ".join(o for o in exc.options if o != "schema")
        hint = ("; the joblib and submitit launchers are an optional extra: "
                'pip install -e ".[sweeps]"') if group == "hydra/launcher" else \
            f"; your own {group}/{name}.yaml: --config-dir DIR or hydra.searchpath=[file://DIR]"
        return f"{group}={name}: no such option (choose from {choices}){hint}"
    if isinstance(exc, OverrideParseException):
        return f"{exc.override}: cannot parse this override ({_first_line(exc.message)})"
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = cause.full_key or "?"
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):
            hint = did_you_mean(key, cause.object_type) or f" ({_first_line(cause.msg)})"
            return f"{key}: no such key{hint}"
        merged = re.search(r"override (\S+)", str(exc))
        shown = merged.group(1) if merged and merged.group(1).startswith(key) else key
        return f"{shown}: {_first_line(cause.msg)}"
    full_key = re.search(r"full_key: (\S+)", str(exc))
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if full_key and len(lines) > 1:  # raised inside a config file (e.g. an experiment=)
        return f"{full_key.group(1)}: {lines[1]} ({lines[0].split(':')[0]})"
    exists = re.search(r"An item is already at '([^']+)'", str(exc))
    if exists:
        key = exists.group(1)
        return f"+{key}: the key exists; set it without the + ({key}=...)"
    could_not = re.search(r"Could not override '([^']+)'", str(exc))
    if could_not:
        return f"{could_not.group(1)}: no such key"
    return _first_line(str(exc)) or type(exc).__name__
