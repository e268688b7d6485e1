"""User-facing errors: each one prints as a single line, never as a traceback."""

from __future__ import annotations


class PdpruneError(Exception):
    """A problem the user can fix (bad input, missing file); printed as one line."""


class ConfigError(PdpruneError):
    """A bad config value: names the key, the value and what is wrong with it."""

    def __init__(self, key: str, value: object, reason: str):
        self.key, self.value, self.reason = key, value, reason
        shown = "" if value is None and "=" in key else f"={value}"
        super().__init__(f"{key}{shown}: {reason}")
