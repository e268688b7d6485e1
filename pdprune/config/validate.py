"""Semantic checks on a composed config, run before anything is built.

The schemas already fixed types and key names; this module checks what a type cannot say:
ranges, finite numbers, a schedule that fits in the training run, data that exists on disk, a
device that is there, keys that `+key=value` added past the schemas.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..data.locate import TEXT_DATASETS, check_dataset_files
from ..errors import ConfigError, PdpruneError
from ..models.text_names import TEXT_MODELS
from ..pruning.dynamic_sparse import METHODS as DYNAMIC_SPARSE
from ..pruning.dynamic_sparse import check_config as check_dynamic_sparse
from ..pruning.early_bird import PAIRS
from ..pruning.importance import CRITERIA
from ..pruning.movement import check_config as check_movement
from ..pruning.snip import check_config as check_snip
from ..pruning.soft_threshold import check_config as check_str
from ..train.preempt import checkpoint_interval
from .compose_errors import did_you_mean
from .schema import NMConfig

BUDGETS = ("uniform", "global")
HARDEN_AT = ("end", "ramp_end")
LR_SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("auto", "bf16", "off")


def validate(cfg: DictConfig, own_model: bool = False) -> None:
    """Raise ConfigError naming the first bad key; return silently when the config is usable.
    `own_model`: the caller brings the model (the public API), so cfg.model is not the one
    pruned and checks of its architecture are left to the pruner."""
    check_known_keys(cfg)
    check_finite(cfg)
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
    # (null: movement's default, the paper's budget of hard or soft movement)
    if cfg.method.get("budget") is not None and cfg.method.budget not in BUDGETS:
        raise ConfigError("method.budget", cfg.method.budget,
                          f"must be one of {', '.join(BUDGETS)}")
    if "tau" in cfg.method and cfg.method.tau <= 0:
        raise ConfigError("method.tau", cfg.method.tau, "must be positive")
    if cfg.method.get("harden_at", "end") not in HARDEN_AT:
        raise ConfigError("method.harden_at", cfg.method.harden_at,
                          f"must be one of {', '.join(HARDEN_AT)}")
    if cfg.method.get("harden_at") == "ramp_end" and cfg.granularity.name != "channel":
        raise ConfigError("method.harden_at", "ramp_end", "needs granularity=channel (hardening "
                          "early pays only where pruned units can leave the network)")
    if cfg.granularity.name == "nm":
        _check_nm(cfg.granularity)
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
    if cfg.method.name == "movement":
        check_movement(cfg)
    if cfg.method.name in DYNAMIC_SPARSE:
        check_dynamic_sparse(cfg)
    if cfg.method.name == "snip":
        check_snip(cfg)
    if cfg.method.name == "str":
        check_str(cfg)
    if cfg.method.name != "dense":
        _check_schedule(cfg.schedule, epochs)
    if cfg.trainer.max_train_batches is not None and cfg.trainer.max_train_batches < 1:
        raise ConfigError("trainer.max_train_batches", cfg.trainer.max_train_batches,
                          "must be >= 1 (or null: every batch)")
    checkpoint_interval(cfg.trainer.get("checkpoint_every"))  # steps, `Nmin` or null
    _check_text(cfg)
    _check_distill(cfg.trainer.distill)
    _check_export(cfg.export)
    check_dataset_files(cfg.dataset)
    if cfg.method.name == "layerprune" and not own_model:
        _check_blocks(cfg)


def check_known_keys(node: DictConfig, prefix: str = "") -> None:
    """Every key is one its schema has. Composition already refuses a misspelt key, but
    Hydra's `+key=value` opens the config to add one, so a typo made with `+` would be carried
    along unused. A free-form group would be a dict field in the schemas (none is today)."""
    schema = OmegaConf.get_type(node)
    fields = [f.name for f in dataclasses.fields(schema)] \
        if dataclasses.is_dataclass(schema) else None
    if node._get_node_flag("struct") is False:  # an open schema (model=custom): its extra
        fields = None  # keys are a callable's arguments, which the build checks
    for key in node:
        full = f"{prefix}{key}"
        if fields is not None and key not in fields:
            why = "no such key" + (did_you_mean(full, schema) or
                                   f" in {prefix.rstrip('.') or 'the config'}")
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                raise PdpruneError(f"{full}: {why}")
            raise ConfigError(full, child._value(), why)
        if not OmegaConf.is_interpolation(node, key) \
                and isinstance(node._get_node(key), DictConfig):  # (a ??? value: not read)
            check_known_keys(node[key], f"{full}.")


def check_finite(node: DictConfig | ListConfig, prefix: str = "") -> None:
    """No nan or inf anywhere: every range check below would let nan through (a comparison
    with nan is false), and one non-finite number spoils the whole run. Interpolations are
    skipped: the key they copy is checked where the user set it."""
    if isinstance(node, DictConfig):
        items = [(key, f"{prefix}.{key}" if prefix else str(key)) for key in node]
    else:
        items = [(i, f"{prefix}[{i}]") for i in range(len(node))]
    for key, full in items:
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            check_finite(value, full)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(full, value, "must be a finite number")


def _check_text(cfg: DictConfig) -> None:
    """Text models read token ids and image models read pixels: the pair must match."""
    text_model, text_data = cfg.model.name in TEXT_MODELS, cfg.dataset.name in TEXT_DATASETS
    if cfg.dataset.name == "custom":  # the user's data: token ids or pixels, as they made it
        text_data = text_model
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


def _check_nm(nm: DictConfig) -> None:
    """n of every m weights kept: blame the key that was moved off its default."""
    if nm.m < 1:
        raise ConfigError("granularity.m", nm.m, "must be >= 1 (and above granularity.n)")
    if nm.n >= nm.m and nm.m != NMConfig.m and nm.n == NMConfig.n:
        raise ConfigError("granularity.m", nm.m, f"must be above granularity.n={nm.n}")
    if not 1 <= nm.n < nm.m:
        raise ConfigError("granularity.n", nm.n, f"must be in [1, granularity.m={nm.m})")


def _check_export(export: DictConfig) -> None:
    if not export.latency_batch_sizes or min(export.latency_batch_sizes) < 1:
        raise ConfigError("export.latency_batch_sizes", list(export.latency_batch_sizes),
                          "must be a non-empty list of batch sizes >= 1")
    if export.latency_repeats < 1:
        raise ConfigError("export.latency_repeats", export.latency_repeats, "must be >= 1")
    if export.latency_warmup < 0:
        raise ConfigError("export.latency_warmup", export.latency_warmup, "must be >= 0")


def _check_model(model: DictConfig) -> None:
    checkpoint = model.get("checkpoint")
    path = Path(checkpoint or "").expanduser()  # a weights file or a run folder
    if checkpoint and not (path.is_file() or (path / "model.safetensors").is_file()):
        raise ConfigError("model.checkpoint", checkpoint, "a folder without model.safetensors"
                          if path.is_dir() else "no such file")
    match = model.get("match_nonzeros")
    if match is not None and not 0.0 < match < 1.0:
        raise ConfigError("model.match_nonzeros", match, "must be a sparsity in (0, 1)")


def _check_device(device: str) -> None:
    if device in ("auto", "cpu"):
        return
    index = re.fullmatch(r"cuda(?::(\d+))?", device)
    if index is None:
        raise ConfigError("trainer.device", device, "must be auto, cpu, cuda or cuda:N")
    import torch  # only when a GPU is asked for: checking a config loads no torch otherwise

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError("trainer.device", device, "CUDA is not available here (no GPU that "
                          "torch can use); use trainer.device=cpu or auto")
    if index.group(1) is not None and int(index.group(1)) >= count:
        raise ConfigError("trainer.device", device, f"this machine has {count} GPU(s): "
                          f"cuda:0 to cuda:{count - 1}")


def _derived_from(node: DictConfig, key: str) -> str | None:
    """The setting node[key] follows when it is an interpolation (a derived default such as
    `${epochs_frac:0.5}`), e.g. 'trainer.epochs=30'; None when it was given as a value."""
    if not OmegaConf.is_interpolation(node, key):
        return None
    root, text = node._get_root(), str(node._get_node(key)._value())
    if "epochs_frac" in text:
        return f"trainer.epochs={root.trainer.epochs}"
    ref = re.fullmatch(r"\$\{([\w.]+)\}", text)
    return f"{ref.group(1)}={OmegaConf.select(root, ref.group(1))}" if ref else text


def _shown(node: DictConfig, key: str) -> object:
    """node[key] as an error shows it: a derived value says what it derives from."""
    source = _derived_from(node, key)
    return f"{node[key]} (derived from {source})" if source else node[key]


def _check_schedule(schedule: DictConfig, epochs: int) -> None:
    """Errors blame a key the user set; a derived default in one says where it comes from."""
    if not 0.0 <= schedule.target < 1.0:
        raise ConfigError("schedule.target", _shown(schedule, "target"), "must be in [0, 1)")
    after_training = f"after training ends (trainer.epochs={epochs})"
    if schedule.name == "pdp":
        if schedule.warmup_epochs < 0:
            raise ConfigError("schedule.warmup_epochs", schedule.warmup_epochs, "must be >= 0")
        if schedule.eps is not None:
            if not 0 < schedule.eps <= 1:
                raise ConfigError("schedule.eps", schedule.eps, "must be in (0, 1]")
            key, ramp = "eps", math.ceil(1 / schedule.eps)
        else:
            if schedule.ramp_epochs < 1:
                raise ConfigError("schedule.ramp_epochs", schedule.ramp_epochs, "must be >= 1")
            key, ramp = "ramp_epochs", schedule.ramp_epochs
        last = schedule.warmup_epochs + ramp  # the target holds from this epoch (1-based) on
        if last > epochs:
            if _derived_from(schedule, key) and not _derived_from(schedule, "warmup_epochs"):
                key = "warmup_epochs"  # the ramp follows trainer.epochs; the warm-up was set
            warmup = schedule.warmup_epochs if key == "warmup_epochs" \
                else _shown(schedule, "warmup_epochs")
            raise ConfigError(f"schedule.{key}", _shown(schedule, key),
                              f"warm-up {warmup} + ramp {ramp} epochs reaches the target at "
                              f"epoch {last}, {after_training}")
    elif schedule.name == "cubic":
        if schedule.dt < 1:
            raise ConfigError("schedule.dt", schedule.dt, "must be at least 1 optimizer step")
        if not 0.0 <= schedule.initial_sparsity <= schedule.target:
            raise ConfigError("schedule.initial_sparsity", schedule.initial_sparsity,
                              f"must be in [0, target={schedule.target}]")
        if schedule.start_epoch < 0:
            raise ConfigError("schedule.start_epoch", schedule.start_epoch, "must be >= 0")
        if schedule.end_epoch <= schedule.start_epoch:
            if _derived_from(schedule, "end_epoch") and not _derived_from(schedule, "start_epoch"):
                raise ConfigError("schedule.start_epoch", schedule.start_epoch, "must be before "
                                  f"schedule.end_epoch={_shown(schedule, 'end_epoch')}")
            raise ConfigError("schedule.end_epoch", _shown(schedule, "end_epoch"),
                              f"must be after schedule.start_epoch="
                              f"{_shown(schedule, 'start_epoch')}")
        if schedule.end_epoch > epochs:
            raise ConfigError("schedule.end_epoch", schedule.end_epoch, f"ends {after_training}")
    elif schedule.name == "oneshot":
        if not 0 <= schedule.epoch < epochs:
            raise ConfigError("schedule.epoch", _shown(schedule, "epoch"),
                              f"must be in [0, {epochs}) to prune before training ends")
    elif schedule.name == "epi":
        if schedule.criterion not in CRITERIA:
            raise ConfigError("schedule.criterion", schedule.criterion,
                              f"must be one of {', '.join(CRITERIA)}")
        if schedule.normalize not in ("mean", "none"):
            raise ConfigError("schedule.normalize", schedule.normalize, "must be mean or none")
        if schedule.cut not in ("macs", "channels"):
            raise ConfigError("schedule.cut", schedule.cut, "must be macs or channels")
        if schedule.tau is not None and not 0 < schedule.tau < 1:
            raise ConfigError("schedule.tau", schedule.tau, "must be in (0, 1)")
        for key in ("window", "patience"):
            if schedule[key] < 1:
                raise ConfigError(f"schedule.{key}", schedule[key], "must be >= 1")
        if epochs < 2:
            raise ConfigError("trainer.epochs", epochs, "schedule=epi needs at least 2: it "
                              "prunes at the end of an epoch and trains on after")
        if not 1 <= schedule.max_epoch < epochs:
            raise ConfigError("schedule.max_epoch", _shown(schedule, "max_epoch"),
                              f"must be in [1, {epochs}) so that training goes on after pruning")
    elif schedule.name == "early_bird":
        _check_early_bird(schedule, epochs)


def _check_early_bird(schedule: DictConfig, epochs: int) -> None:
    """schedule=early_bird (docs/methods.md#early-bird)."""
    for key, allowed in (("cut", ("channels", "macs")), ("pairs", PAIRS)):
        if schedule[key] not in allowed:
            raise ConfigError(f"schedule.{key}", schedule[key], f"must be {' or '.join(allowed)}")
    if not schedule.l1 >= 0:
        raise ConfigError("schedule.l1", schedule.l1, "must be >= 0")
    if not 0 < schedule.epsilon <= 1:
        raise ConfigError("schedule.epsilon", schedule.epsilon,
                          "must be in (0, 1]: a fraction of the channels")
    least = 2 if schedule.pairs == "newest" else 1  # newest compares window - 1 earlier masks
    if schedule.window < least:
        raise ConfigError("schedule.window", schedule.window, f"must be >= {least} with "
                          f"schedule.pairs={schedule.pairs}")
    if epochs < 2:
        raise ConfigError("trainer.epochs", epochs, "schedule=early_bird needs at least 2: it "
                          "prunes at the end of an epoch and trains on after")
    if not 1 <= schedule.max_epoch < epochs:
        raise ConfigError("schedule.max_epoch", _shown(schedule, "max_epoch"),
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
    if cfg.schedule.name == "early_bird" and cfg.method.name != "dense":
        if cfg.granularity.name != "channel":
            raise ConfigError("schedule", "early_bird", "draws a ticket of channels: needs "
                              "granularity=channel")
        if cfg.method.name not in ("magnitude", "gmp", "random"):
            raise ConfigError("method", cfg.method.name, "schedule=early_bird applies its "
                              "ticket as binary channel masks: use method=magnitude")
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
        if m.latency_batch < 1:
            raise ConfigError("method.latency_batch", m.latency_batch, "must be >= 1")
        if cfg.schedule.name != "oneshot":
            raise ConfigError("schedule", cfg.schedule.name, "method=layerprune removes blocks "
                              "once: schedule=oneshot (schedule.epoch says when)")
        if cfg.export.compact:
            raise ConfigError("export.compact", "true", "is for channels; layerprune's model "
                              "is already the shallower network")


ENCODERS = ("bert", "roberta", "xlm-roberta", "electra")  # whose layers LayerPrune finds


def _check_blocks(cfg: DictConfig) -> None:
    """method=layerprune: the model has removable blocks, more than method.layers_to_remove
    (one must stay). Counted on a model built on the meta device (no memory, no RNG draws)."""
    count = removable_blocks(cfg)
    if count is None:
        return  # a text model of a family counted only when built: the run checks it
    from ..pruning.limits import check_blocks

    check_blocks(count, None if cfg.method.latency_budget is not None
                 else cfg.method.layers_to_remove, f"model={cfg.model.name}")


def removable_blocks(cfg: DictConfig) -> int | None:
    """How many blocks LayerPrune could remove from cfg.model (None: not known before it is
    built, for a Hugging Face model outside ENCODERS)."""
    model = cfg.model
    if model.name in TEXT_MODELS:
        from ..models.text import SIZES, model_folder

        if model.name in SIZES:
            return SIZES[model.name]["num_hidden_layers"]
        config = json.loads((model_folder(model) / "config.json").read_text())
        return config.get("num_hidden_layers") if config.get("model_type") in ENCODERS else None
    from ..data.locate import nominal_input
    from ..models import build_on_meta
    from ..models.blocks import find_blocks

    found = nominal_input(cfg.dataset)
    if found is None:  # dataset=custom: known once built; the run checks it
        return None
    return len(find_blocks(build_on_meta(model, *found)))
