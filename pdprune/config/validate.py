"""Semantic checks on a composed config, run before anything is built.

The schemas already fixed types and key names; this module checks what a type cannot say:
ranges, a schedule that fits in the training run, data that exists on disk.
"""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from ..data.locate import TEXT_DATASETS, locate_dataset
from ..errors import ConfigError
from ..models.text_names import TEXT_MODELS
from ..pruning.importance import CRITERIA

BUDGETS = ("uniform", "global")
LR_SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("auto", "bf16", "off")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key; return silently when the config is usable."""
    if not 0.0 <= cfg.sparsity < 1.0:
        raise ConfigError("sparsity", cfg.sparsity, "must be in [0, 1)")
    epochs = cfg.trainer.epochs
    if epochs <= 0:
        raise ConfigError("trainer.epochs", epochs, "must be a positive number of epochs")
    if cfg.trainer.amp not in AMP_MODES:
        raise ConfigError("trainer.amp", cfg.trainer.amp, f"must be one of {', '.join(AMP_MODES)}")
    _check_device(cfg.trainer.device)
    if cfg.trainer.threads is not None and cfg.trainer.threads <= 0:
        raise ConfigError("trainer.threads", cfg.trainer.threads, "must be a positive count")
    if cfg.optim.lr <= 0:
        raise ConfigError("optim.lr", cfg.optim.lr, "must be positive")
    if cfg.optim.lr_schedule not in LR_SCHEDULES:
        raise ConfigError("optim.lr_schedule", cfg.optim.lr_schedule,
                          f"must be one of {', '.join(LR_SCHEDULES)}")
    if cfg.dataset.batch_size <= 0:
        raise ConfigError("dataset.batch_size", cfg.dataset.batch_size, "must be positive")
    if "width" in cfg.model and cfg.model.width <= 0:
        raise ConfigError("model.width", cfg.model.width, "must be positive")
    _check_model(cfg.model)
    if "budget" in cfg.method and cfg.method.budget not in BUDGETS:
        raise ConfigError("method.budget", cfg.method.budget,
                          f"must be one of {', '.join(BUDGETS)}")
    if "tau" in cfg.method and cfg.method.tau <= 0:
        raise ConfigError("method.tau", cfg.method.tau, "must be positive")
    if cfg.granularity.name == "nm" and not 1 <= cfg.granularity.n < cfg.granularity.m:
        raise ConfigError("granularity.n", cfg.granularity.n,
                          f"must be in [1, granularity.m={cfg.granularity.m})")
    if cfg.granularity.name == "channel" and cfg.granularity.round_to < 1:
        raise ConfigError("granularity.round_to", cfg.granularity.round_to,
                          "must be >= 1 (1: no rounding)")
    if cfg.granularity.name == "nm" and cfg.method.name != "dense" and cfg.sparsity == 0:
        raise ConfigError("sparsity", cfg.sparsity, "must be > 0 with granularity=nm (the "
                          "pattern sets the final sparsity; `sparsity` only paces the schedule)")
    if cfg.export.compact and (cfg.granularity.name != "channel" or cfg.method.name == "dense"):
        raise ConfigError("export.compact", "true", "needs granularity=channel and a pruning "
                          "method (only whole pruned channels can be removed)")
    _check_pairing(cfg)
    if cfg.method.name != "dense":
        _check_schedule(cfg.schedule, epochs)
    if cfg.trainer.max_train_batches is not None and cfg.trainer.max_train_batches < 1:
        raise ConfigError("trainer.max_train_batches", cfg.trainer.max_train_batches,
                          "must be >= 1 (or null: every batch)")
    _check_text(cfg)
    _check_distill(cfg.trainer.distill)
    locate_dataset(cfg.dataset)


def _check_text(cfg: DictConfig) -> None:
    """Text models read token ids and image models read pixels: the pair must match."""
    text_model, text_data = cfg.model.name in TEXT_MODELS, cfg.dataset.name in TEXT_DATASETS
    if text_model and not text_data:
        raise ConfigError("dataset", cfg.dataset.name, f"model={cfg.model.name} needs a text "
                          f"dataset ({', '.join(TEXT_DATASETS)})")
    if text_data and not text_model:
        raise ConfigError("model", cfg.model.name, f"dataset={cfg.dataset.name} needs a text "
                          f"model ({', '.join(TEXT_MODELS)})")
    if cfg.model.name == "hf" and not cfg.model.path:
        raise ConfigError("model.path", "null", "model=hf needs the folder of a local Hugging "
                          "Face model (config.json, weights, tokenizer files)")
    if cfg.model.get("path") and not (Path(cfg.model.path).expanduser() / "config.json").is_file():
        raise ConfigError("model.path", cfg.model.path, "is not a Hugging Face model folder "
                          "(no config.json)")
    if text_model and cfg.granularity.name == "channel":
        raise ConfigError("granularity", "channel", "is for CNNs; text models take "
                          "unstructured or nm")
    if text_model and cfg.method.name == "layerprune" and cfg.method.latency_budget:
        raise ConfigError("method.latency_budget", cfg.method.latency_budget, "is not available "
                          "for text models yet (use method.layers_to_remove)")
    if text_model and (cfg.export.onnx or cfg.export.latency):
        key = "export.onnx" if cfg.export.onnx else "export.latency"
        raise ConfigError(key, "true", "is not available for text models yet")


def _check_distill(distill: DictConfig) -> None:
    if not distill.enabled:
        return
    if not 0.0 <= distill.weight <= 1.0:
        raise ConfigError("trainer.distill.weight", distill.weight, "must be in [0, 1]")
    if distill.temperature <= 0:
        raise ConfigError("trainer.distill.temperature", distill.temperature, "must be positive")
    if distill.teacher is None and distill.teacher_epochs < 1:
        raise ConfigError("trainer.distill.teacher_epochs", distill.teacher_epochs,
                          "must be >= 1 when no trainer.distill.teacher is given")
    if distill.teacher is not None:
        path = Path(distill.teacher).expanduser()
        weights = path / "model.safetensors" if path.is_dir() else path
        if not weights.is_file():
            raise ConfigError("trainer.distill.teacher", distill.teacher,
                              "no such run folder (with model.safetensors) or weights file")


def _check_model(model: DictConfig) -> None:
    checkpoint = model.get("checkpoint")
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise ConfigError("model.checkpoint", checkpoint, "no such file")
    match = model.get("match_nonzeros")
    if match is not None and not 0.0 < match < 1.0:
        raise ConfigError("model.match_nonzeros", match, "must be a sparsity in (0, 1)")


def _check_device(device: str) -> None:
    if device in ("auto", "cpu") or device == "cuda" or device.startswith("cuda:"):
        return
    raise ConfigError("trainer.device", device, "must be auto, cpu, cuda or cuda:N")


def _check_schedule(schedule: DictConfig, epochs: int) -> None:
    if not 0.0 <= schedule.target < 1.0:
        raise ConfigError("schedule.target", schedule.target, "must be in [0, 1)")
    after_training = f"after training ends (trainer.epochs={epochs})"
    if schedule.name == "pdp":
        if schedule.warmup_epochs < 0:
            raise ConfigError("schedule.warmup_epochs", schedule.warmup_epochs, "must be >= 0")
        if schedule.eps is not None:
            if not 0 < schedule.eps <= 1:
                raise ConfigError("schedule.eps", schedule.eps, "must be in (0, 1]")
            key, value, ramp = "schedule.eps", schedule.eps, math.ceil(1 / schedule.eps)
        else:
            if schedule.ramp_epochs < 1:
                raise ConfigError("schedule.ramp_epochs", schedule.ramp_epochs, "must be >= 1")
            key, value, ramp = "schedule.ramp_epochs", schedule.ramp_epochs, schedule.ramp_epochs
        last = schedule.warmup_epochs + ramp  # the target holds from this epoch (1-based) on
        if last > epochs:
            raise ConfigError(key, value, f"warm-up {schedule.warmup_epochs} + ramp {ramp} epochs "
                              f"reaches the target at epoch {last}, {after_training}")
    elif schedule.name == "cubic":
        if schedule.dt < 1:
            raise ConfigError("schedule.dt", schedule.dt, "must be at least 1 optimizer step")
        if not 0.0 <= schedule.initial_sparsity <= schedule.target:
            raise ConfigError("schedule.initial_sparsity", schedule.initial_sparsity,
                              f"must be in [0, target={schedule.target}]")
        if schedule.start_epoch < 0:
            raise ConfigError("schedule.start_epoch", schedule.start_epoch, "must be >= 0")
        if schedule.end_epoch <= schedule.start_epoch:
            raise ConfigError("schedule.end_epoch", schedule.end_epoch,
                              f"must be after schedule.start_epoch={schedule.start_epoch}")
        if schedule.end_epoch > epochs:
            raise ConfigError("schedule.end_epoch", schedule.end_epoch, f"ends {after_training}")
    elif schedule.name == "oneshot":
        if not 0 <= schedule.epoch < epochs:
            raise ConfigError("schedule.epoch", schedule.epoch,
                              f"must be in [0, {epochs}) to prune before training ends")
    elif schedule.name == "epi":
        if schedule.criterion not in CRITERIA:
            raise ConfigError("schedule.criterion", schedule.criterion,
                              f"must be one of {', '.join(CRITERIA)}")
        if schedule.tau is not None and not 0 < schedule.tau < 1:
            raise ConfigError("schedule.tau", schedule.tau, "must be in (0, 1)")
        for key in ("window", "patience"):
            if schedule[key] < 1:
                raise ConfigError(f"schedule.{key}", schedule[key], "must be >= 1")
        if not 1 <= schedule.max_epoch < epochs:
            raise ConfigError("schedule.max_epoch", schedule.max_epoch,
                              f"must be in [1, {epochs}) so that training goes on after pruning")


def _check_pairing(cfg: DictConfig) -> None:
    """Methods, granularities and schedules that only make sense together."""
    layer_method, layer_unit = cfg.method.name == "layerprune", cfg.granularity.name == "layer"
    if layer_method != layer_unit:
        key, value = ("granularity", cfg.granularity.name) if layer_method \
            else ("method", cfg.method.name)
        raise ConfigError(key, value, "method=layerprune and granularity=layer go together")
    if cfg.schedule.name == "epi" and cfg.method.name != "dense" \
            and cfg.granularity.name != "channel":
        raise ConfigError("schedule", "epi", "decides when to prune channels: needs "
                          "granularity=channel")
    if layer_method:
        m = cfg.method
        if m.criterion not in CRITERIA:
            raise ConfigError("method.criterion", m.criterion,
                              f"must be one of {', '.join(CRITERIA)}")
        if m.latency_budget is not None and not 0 < m.latency_budget < 1:
            raise ConfigError("method.latency_budget", m.latency_budget,
                              "must be in (0, 1): a fraction of the unpruned model's latency")
        if m.latency_budget is None and (m.layers_to_remove is None or m.layers_to_remove < 1):
            raise ConfigError("method.layers_to_remove", m.layers_to_remove,
                              "must be >= 1 (or set method.latency_budget)")
        if cfg.schedule.name != "oneshot":
            raise ConfigError("schedule", cfg.schedule.name, "method=layerprune removes blocks "
                              "once: schedule=oneshot (schedule.epoch says when)")
        if cfg.export.compact:
            raise ConfigError("export.compact", "true", "is for channels; layerprune's model "
                              "is already the shallower network")
