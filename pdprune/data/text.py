"""Text classification data: examples -> the model's tokenizer -> cached id tensors -> loaders.

Every text dataset reduces to TextExamples per split; this module tokenises them once with the
model's own tokenizer (cached on disk, keyed by the tokenizer, the length and the texts, so a
second run does not re-tokenise) and serves them with the in-memory TensorLoader. Batches are
padded dynamically: ids are stored padded to `max_length` and every batch is cut to its own
longest sequence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from .bundle import DataBundle, TensorLoader, seeded_split

log = logging.getLogger("pdprune")


@dataclass
class TextExamples:
    """One split: texts (or text pairs) and integer labels."""

    first: list[str]
    labels: list[int]
    second: list[str] | None = None  # the second sentence of a pair (NLI, paraphrase)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: torch.Tensor) -> TextExamples:
        idx = indices.tolist()
        return TextExamples([self.first[i] for i in idx], [self.labels[i] for i in idx],
                            None if self.second is None else [self.second[i] for i in idx])


def split_off(examples: TextExamples, fractions: tuple[float, ...],
              seed: int) -> list[TextExamples]:
    """[rest, part 1, part 2, ...]: seeded disjoint parts of the given fractions."""
    n = len(examples)
    sizes = tuple(max(1, round(f * n)) if f > 0 else 0 for f in fractions)
    return [examples.take(idx) for idx in seeded_split(n, sizes, seed)]


def cache_dir(cfg: DictConfig) -> Path:
    if cfg.get("cache_dir"):
        return Path(cfg.cache_dir).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pdprune" / "tokens"


def _fingerprint(tokenizer, examples: TextExamples, max_length: int) -> str:
    digest = hashlib.sha256()
    vocab = tokenizer.get_vocab()
    digest.update(json.dumps([type(tokenizer).__name__, len(vocab), max_length,
                              tokenizer.pad_token_id, tokenizer.sep_token_id]).encode())
    digest.update(hashlib.sha256("\n".join(sorted(vocab)).encode()).digest())
    for texts in (examples.first, examples.second or []):
        digest.update(hashlib.sha256("\x00".join(texts).encode()).digest())
    return digest.hexdigest()[:24]


def tokenize(tokenizer, examples: TextExamples, max_length: int, cache: Path) -> torch.Tensor:
    """(N, max_length) int64 token ids, truncated and padded with the pad id; from the cache
    when these texts were tokenised so before."""
    path = cache / f"{_fingerprint(tokenizer, examples, max_length)}.pt"
    if path.is_file():
        try:
            ids = torch.load(path, weights_only=True)
            if isinstance(ids, torch.Tensor):
                return ids
        except Exception:  # noqa: BLE001 - unpickling fails in many ways on a damaged file
            pass  # a damaged cache file is simply rebuilt
    encoded = tokenizer(examples.first, examples.second, truncation=True, max_length=max_length,
                        padding="max_length", return_attention_mask=False,
                        return_token_type_ids=False)
    ids = torch.tensor(encoded["input_ids"], dtype=torch.long)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(ids, tmp)
    tmp.replace(path)  # atomic: a concurrent run never reads half a file
    return ids


def trim_padding(pad_id: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch transform: cut the padding columns that no sequence of this batch uses (dynamic
    padding; the sequences are padded at the end)."""

    def transform(ids: torch.Tensor) -> torch.Tensor:
        used = int((ids != pad_id).sum(dim=1).max()) if len(ids) else 1
        return ids[:, :max(1, used)]

    return transform


def text_bundle(name: str, splits: dict[str, TextExamples], num_classes: int, cfg: DictConfig,
                tokenizer, seed: int, device: torch.device) -> DataBundle:
    """Loaders over the train / val / test splits, tokenised with the model's tokenizer."""
    cache = cache_dir(cfg)
    ids = {split: tokenize(tokenizer, examples, cfg.max_length, cache)
           for split, examples in splits.items()}
    labels = {split: torch.tensor(examples.labels, dtype=torch.long)
              for split, examples in splits.items()}
    trim = trim_padding(tokenizer.pad_token_id)
    return DataBundle(
        name=name,
        train=TensorLoader(ids["train"], labels["train"], cfg.batch_size, shuffle=True,
                           drop_last=True, seed=seed, transform=trim, device=device),
        val=TensorLoader(ids["val"], labels["val"], cfg.eval_batch_size, transform=trim,
                         device=device),
        test=TensorLoader(ids["test"], labels["test"], cfg.eval_batch_size, transform=trim,
                          device=device),
        input_shape=(cfg.max_length,),
        num_classes=num_classes,
    )
