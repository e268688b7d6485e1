"""dataset=text_csv: the user's own texts and labels in a CSV or JSONL file (text_table.py),
split by seed into train / val / test (dataset.val_fraction, dataset.test_fraction) and
tokenised with the model's tokenizer like the packaged text sets (text.py: cached on disk under
dataset.cache_dir)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from ..models.text import load_tokenizer
from .bundle import DataBundle
from .text import TextExamples, split_off, text_bundle
from .text_table import label_ids, read_table


def build_text_csv(cfg: DictConfig, seed: int, device: torch.device,
                   model_cfg: DictConfig) -> DataBundle:
    texts, labels = read_table(cfg)
    ids, classes = label_ids(labels)
    train, val, test = split_off(TextExamples(texts, ids), (cfg.val_fraction, cfg.test_fraction),
                                 cfg.split_seed)
    return text_bundle(cfg.name, {"train": train, "val": val, "test": test}, len(classes), cfg,
                       load_tokenizer(model_cfg), seed, device)
