"""GLUE tasks (sst2, mnli, qqp) from local files: GLUE's own TSV layout (train.tsv, dev.tsv /
dev_matched.tsv) or a Hugging Face dataset saved with `save_to_disk` (train, validation /
validation_matched), read with the `datasets` library.

GLUE's test labels are not public, so: test = the dev set, val = a seeded dataset.val_fraction
of train (the same convention as ImageNet's val/ folder).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..errors import PdpruneError
from ..models.text import load_tokenizer
from .bundle import DataBundle, one_line
from .text import TextExamples, split_off, text_bundle

HF_SAVED = "dataset_dict.json"  # what DatasetDict.save_to_disk writes at the top


@dataclass(frozen=True)
class GlueTask:
    columns: tuple[str, ...]  # text columns in the TSV files
    label: str  # label column in the TSV files
    classes: tuple[str, ...] | None  # label strings in class order (None: the TSV holds ints)
    dev: str  # the TSV file that serves as test set
    hf_columns: tuple[str, ...]  # text columns in the Hugging Face dataset
    hf_dev: str  # its split that serves as test set


TASKS = {
    "sst2": GlueTask(("sentence",), "label", None, "dev.tsv", ("sentence",), "validation"),
    # Hugging Face's GLUE label order
    "mnli": GlueTask(("sentence1", "sentence2"), "gold_label",
                     ("entailment", "neutral", "contradiction"), "dev_matched.tsv",
                     ("premise", "hypothesis"), "validation_matched"),
    "qqp": GlueTask(("question1", "question2"), "is_duplicate", None, "dev.tsv",
                    ("question1", "question2"), "validation"),
}
NUM_CLASSES = {"sst2": 2, "mnli": 3, "qqp": 2}


def is_saved_hf_dataset(root: Path) -> bool:
    return (root / HF_SAVED).is_file()


def read_tsv(path: Path, task: GlueTask) -> TextExamples:
    """A GLUE TSV file (header row, tab-separated, no quoting); rows with a missing field or
    an unknown label (QQP has a few broken lines) are skipped."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PdpruneError(f"{path}: cannot read ({one_line(exc)})") from None
    if not rows:
        raise PdpruneError(f"{path}: empty file")
    header = rows[0]
    missing = [c for c in (*task.columns, task.label) if c not in header]
    if missing:
        raise PdpruneError(f"{path}: no column {missing[0]} (GLUE's TSV layout has "
                           f"{', '.join((*task.columns, task.label))})")
    where = [header.index(c) for c in (*task.columns, task.label)]
    texts: list[list[str]] = [[] for _ in task.columns]
    labels = []
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        label = _label(row[where[-1]], task)
        if label is None:
            continue
        for column, i in zip(texts, where[:-1], strict=False):
            column.append(row[i])
        labels.append(label)
    if not labels:
        raise PdpruneError(f"{path}: no labelled rows")
    return TextExamples(texts[0], labels, texts[1] if len(texts) > 1 else None)


def _label(value: str, task: GlueTask) -> int | None:
    if task.classes is not None:
        return task.classes.index(value) if value in task.classes else None
    return int(value) if value.strip().isdigit() else None


def read_saved(root: Path, split: str, task: GlueTask) -> TextExamples:
    """One split of a Hugging Face DatasetDict saved to disk (label -1 rows are dropped)."""
    try:
        from datasets import load_from_disk

        data = load_from_disk(str(root))[split]
    except KeyError:
        raise PdpruneError(f"{root}: the saved dataset has no split {split}") from None
    except Exception as exc:  # datasets raises many types for a damaged folder
        raise PdpruneError(f"{root}: cannot load the saved dataset ({one_line(exc)})") from None
    keep = [i for i, y in enumerate(data["label"]) if y >= 0]
    columns = [data[c] for c in task.hf_columns]
    return TextExamples([columns[0][i] for i in keep], [data["label"][i] for i in keep],
                        [columns[1][i] for i in keep] if len(columns) > 1 else None)


def build_glue(cfg: DictConfig, seed: int, device: torch.device,
               model_cfg: DictConfig) -> DataBundle:
    task = TASKS[cfg.name]
    root = Path(cfg.root).expanduser()
    if is_saved_hf_dataset(root):
        full_train, test = read_saved(root, "train", task), read_saved(root, task.hf_dev, task)
    else:
        full_train, test = read_tsv(root / "train.tsv", task), read_tsv(root / task.dev, task)
    train, val = split_off(full_train, (cfg.val_fraction,), cfg.split_seed)
    return text_bundle(cfg.name, {"train": train, "val": val, "test": test},
                       NUM_CLASSES[cfg.name], cfg, load_tokenizer(model_cfg), seed, device)
