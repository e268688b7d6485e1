"""Datasets: one module per family; every builder returns a DataBundle (see bundle.py).

Builders are imported on use, so that checking a config (which needs only locate.py) does not
load torch or scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .locate import TEXT_DATASETS

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from .bundle import DataBundle

BUILDERS = {  # dataset name -> "module:function"
    "digits": "digits:build_digits",
    "fashion_mnist": "fashion_mnist:build_fashion_mnist",
    "mnist": "mnist:build_mnist",
    "cifar10": "cifar:build_cifar",
    "cifar100": "cifar:build_cifar",
    "imagenet": "image_folder:build_image_folder",  # ImageNet: one ImageFolder layout
    "image_folder": "image_folder:build_image_folder",
    "custom": "custom:build_custom",
    "synthetic": "synthetic:build_synthetic",
    # text: tokenised with the model's tokenizer, so these builders also take the model config
    "rotten_tomatoes": "packaged_text:build_packaged_text",
    "bbc_news": "packaged_text:build_packaged_text",
    "sst2": "glue:build_glue",
    "mnli": "glue:build_glue",
    "qqp": "glue:build_glue",
    "text_csv": "text_csv:build_text_csv",
}



def build_data(cfg: DictConfig, seed: int, device: torch.device | str | None = None,
               model_cfg: DictConfig | None = None) -> DataBundle:
    """The dataset named by cfg.name, its batches produced on `device` (default: the CPU);
    `seed` drives the training set's shuffle and augmentation. Text datasets are tokenised with
    the tokenizer of the model `model_cfg` names."""
    import torch

    from ..errors import ConfigError

    if cfg.name not in BUILDERS:
        raise ConfigError("dataset.name", cfg.name,
                          f"no such dataset (choose from {', '.join(BUILDERS)})")
    module, function = BUILDERS[cfg.name].split(":")
    builder = getattr(import_module(f".{module}", __name__), function)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if cfg.name in TEXT_DATASETS:
        return builder(cfg, seed, device, model_cfg)
    return builder(cfg, seed, device)
