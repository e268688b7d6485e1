"""metrics.jsonl: one JSON object per epoch, appended and flushed as each epoch ends."""

from __future__ import annotations

import json
from pathlib import Path


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
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
