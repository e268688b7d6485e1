"""dataset=text_csv's file: a table of texts and labels, read without torch (the start-up
checks read it too, to name a missing file or column before any run folder exists).

Formats, by the file's suffix: .jsonl / .ndjson / .json (one JSON object a line), .tsv (tab
separated), anything else CSV (comma separated, a header row). Columns dataset.text_column and
dataset.label_column. Labels may be strings or integers; the classes are the distinct labels,
sorted (numerically when every label is an integer, so labels 0..K-1 keep their numbers).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from omegaconf import DictConfig

from ..errors import ConfigError, PdpruneError

JSON_LINES = (".jsonl", ".ndjson", ".json")


def table_path(cfg: DictConfig) -> Path:
    if not cfg.path:
        raise ConfigError("dataset.path", "null", "dataset=text_csv needs a CSV or JSONL file "
                          "with text and label columns")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise ConfigError("dataset.path", cfg.path, "no such file")
    return path


def _rows(path: Path):
    """(line number, dict) for every row, and the column names seen."""
    if path.suffix.lower() in JSON_LINES:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PdpruneError(f"{path}: line {number} is not a JSON object ({exc.msg})") \
                        from None
                if not isinstance(row, dict):
                    raise PdpruneError(f"{path}: line {number} is not a JSON object")
                yield number, row
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: Excel's byte-order mark
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            yield reader.line_num, row


def read_table(cfg: DictConfig) -> tuple[list[str], list[str | int]]:
    """(texts, labels) of every row; ConfigError naming the column a row lacks."""
    path = table_path(cfg)
    texts, labels = [], []
    try:
        for number, row in _rows(path):
            for key in ("text_column", "label_column"):
                if row.get(cfg[key]) in (None, ""):
                    what = "no such column" if number <= 2 and cfg[key] not in row \
                        else f"missing or empty on line {number}"
                    columns = ", ".join(str(c) for c in row)
                    raise ConfigError(f"dataset.{key}", cfg[key],
                                      f"{what} in {path} (columns: {columns})")
            texts.append(str(row[cfg.text_column]))
            labels.append(row[cfg.label_column])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PdpruneError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if not texts:
        raise ConfigError("dataset.path", cfg.path, "holds no rows")
    return texts, labels


def label_classes(labels: list[str | int]) -> list[str | int]:
    """The distinct labels, sorted; integers (or strings that are integers) as numbers."""
    try:
        numbers = [int(v) for v in labels if not isinstance(v, float | bool)]
        if len(numbers) == len(labels) and all(str(n) == str(v).strip()
                                               for n, v in zip(numbers, labels, strict=True)):
            return sorted(set(numbers))
    except (TypeError, ValueError):
        pass
    return sorted({str(v) for v in labels})


def label_ids(labels: list[str | int]) -> tuple[list[int], list[str | int]]:
    """Each label's class index, and the classes."""
    classes = label_classes(labels)
    index = {str(c): i for i, c in enumerate(classes)}
    return [index[str(v).strip() if isinstance(classes[0], int) else str(v)] for v in labels], \
        classes


def check_text_file(cfg: DictConfig) -> None:
    """The start-up check: the file reads, has both columns, two classes at least, and rows
    enough for the validation and test splits."""
    texts, labels = read_table(cfg)
    classes = label_classes(labels)
    if len(classes) < 2:
        raise ConfigError("dataset.label_column", cfg.label_column,
                          f"has one distinct label ({classes[0]!r}) in {cfg.path}: a classifier "
                          "needs two classes at least")
    taken = sum(max(1, round(cfg[k] * len(texts))) for k in ("val_fraction", "test_fraction"))
    if taken >= len(texts):
        raise ConfigError("dataset.path", cfg.path, f"holds {len(texts)} rows: too few for a "
                          f"training, a validation and a test split")
