"""metrics.jsonl: one JSON object per epoch, written as each epoch ends. Every write replaces
the whole file (files.replacing), so a failed write (a full disk) keeps the epochs before it."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_text


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate(self, epochs: int) -> None:
        """Keep the records of the first `epochs` epochs (a resumed run rewrites the rest)."""
        kept = [r for r in self.read() if r["epoch"] <= epochs]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict) -> None:
        before = self.path.read_text() if self.path.exists() else ""
        write_text(self.path, before + json.dumps(record) + "\n")
