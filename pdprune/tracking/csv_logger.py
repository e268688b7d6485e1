"""metrics.csv: metrics.jsonl as a table (one row per epoch, a column per scalar), rewritten
from metrics.jsonl after every epoch, so a resumed run's table is its metrics.jsonl's."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..config.flat import flatten
from ..files import write_text
from ..train.metrics import MetricsLog
from .base import RunLogger
from .context import RunContext


class CsvLogger(RunLogger):
    def start(self, context: RunContext, previous: dict) -> dict:
        self.run_dir = context.run_dir
        return {}

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        write_csv(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.csv")


def write_csv(metrics_file: Path, out: Path) -> None:
    rows = [{k: v for k, v in flatten(r, sep="/").items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for r in MetricsLog(metrics_file).read()]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out, text.getvalue())
