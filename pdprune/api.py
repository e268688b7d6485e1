"""The public API: prune a model from any training loop.

    pruning = pdprune.Pruning(model, method="pdp", sparsity=0.9, granularity="unstructured",
                              steps_per_epoch=len(loader), epochs=epochs)
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            pruning.step()
        pruning.end_epoch()
    summary = pruning.finalize()

Keywords are the config groups of `prune-train` (method, granularity, schedule, sparsity) and
`settings` any other key of theirs, dotted as on the command line ({"method.tau": 3e-4}). The
config is composed and validated as the CLI composes it: the same defaults, the same one-line
errors. The CLI's trainer drives the same object, through the loop hooks (`before_step`,
`after_backward`, `begin_epoch`, `end_epoch`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from .errors import ConfigError, PdpruneError
from .measure.results import LayerResult
from .pruning import ExportPlan, Pruner, build_pruner


def compose_config(method: str = "pdp", sparsity: float | None = None,
                   granularity: str | None = None, schedule: str | None = None,
                   epochs: int | None = None, settings: Mapping[str, Any] | None = None
                   ) -> DictConfig:
    """pdprune/configs/train.yaml with these choices, composed and validated as prune-train does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import CONFIG_DIR
    from .config.compose_errors import describe
    from .config.validate import validate

    # granularity and schedule None: the method's own (layerprune: layer, oneshot), else
    # train.yaml's (unstructured; the method's schedule)
    overrides = [f"method={method}"]
    overrides += [f"granularity={granularity}"] if granularity is not None else []
    overrides += [f"schedule={schedule}"] if schedule is not None else []
    overrides += [f"sparsity={_value(sparsity)}"] if sparsity is not None else []
    overrides += [f"trainer.epochs={int(epochs)}"] if epochs is not None else []
    overrides += [f"{key}={_value(value)}" for key, value in (settings or {}).items()]
    hydra = GlobalHydra.instance()
    outer = hydra.hydra  # the user's own Hydra app, if any: put back afterwards
    hydra.clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise PdpruneError(describe(exc)) from None
    finally:
        hydra.clear()
        if outer is not None:
            hydra.initialize(outer)
    validate(cfg, own_model=True)
    return cfg


def _value(value: Any) -> str:
    """A Python value as a Hydra override value (numbers, booleans, None, strings, and lists
    and dicts of them)."""
    if hasattr(value, "item") and not isinstance(value, Mapping):
        value = value.item()  # a numpy scalar or a one-element tensor: its Python number
    if isinstance(value, str):
        return _quoted(value)  # a string stays one: "null", "1e-3", "a,b" are not retyped
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _quoted(text: str) -> str:
    """`text` as a Hydra quoted string. Not JSON: Hydra reads a backslash literally except
    before a quote or at the end, so json.dumps would double every regex backslash."""
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


class Pruning:
    """Training-time pruning of `model`: masks attached now, driven by step() / end_epoch(),
    hardened and baked by finalize()."""

    def __init__(self, model: nn.Module, method: str = "pdp", sparsity: float | None = None,
                 granularity: str | None = None, schedule: str | None = None, *,
                 steps_per_epoch: int, epochs: int, input_shape: tuple[int, ...] | None = None,
                 train_batches: Callable[[], Iterable] | None = None,
                 settings: Mapping[str, Any] | None = None):
        if steps_per_epoch < 1:
            raise ConfigError("steps_per_epoch", steps_per_epoch, "must be at least 1")
        cfg = compose_config(method, sparsity, granularity, schedule, epochs, settings)
        if input_shape is None and _needs_input_shape(cfg):
            raise ConfigError("input_shape", None, f"granularity={cfg.granularity.name} / "
                              f"method={method} traces the model: give the shape of one "
                              "input sample, e.g. (3, 32, 32)")
        self._setup(cfg, model, steps_per_epoch, input_shape, train_batches)
        if not self.layers and cfg.method.name not in ("dense", "layerprune"):
            raise ConfigError("method.targets", None, f"select no layer of "
                              f"{type(model).__name__} (layer_types "
                              f"{list(cfg.method.targets.layer_types)}, include "
                              f"{list(cfg.method.targets.include)}): nothing to prune")
        self.begin_epoch(0)
        self.before_step(0)

    @classmethod
    def from_config(cls, cfg: DictConfig, model: nn.Module, *, steps_per_epoch: int,
                    input_shape: tuple[int, ...] | None = None,
                    train_batches: Callable[[], Iterable] | None = None) -> Pruning:
        """From a composed config (the CLI's way); the caller drives the loop hooks."""
        pruning = cls.__new__(cls)
        pruning._setup(cfg, model, steps_per_epoch, input_shape, train_batches)
        return pruning

    def _setup(self, cfg: DictConfig, model: nn.Module, steps_per_epoch: int,
               input_shape: tuple[int, ...] | None,
               train_batches: Callable[[], Iterable] | None) -> None:
        self.config, self.model = cfg, model
        self.core: Pruner = build_pruner(cfg, model, steps_per_epoch, input_shape,
                                         train_batches)
        self.steps = 0  # optimizer steps taken (step() counts them)
        self.epochs_done = 0
        self.results: list[LayerResult] | None = None  # per layer, after finalize()

    # --- your own loop
    def step(self) -> None:
        """After each optimizer step: the masks for the next step."""
        self.steps += 1
        self.before_step(self.steps)

    def end_epoch(self) -> dict:
        """After each epoch's last step. Returns what the pruner logged for the epoch, with
        `parameters_changed: True` when it changed the model's parameters (blocks removed by
        method=layerprune; channels removed when an optimizer is bound, see bind()): rebuild
        any wrapper (DDP, torch.compile) around the model."""
        self.epochs_done += 1
        record = self.epoch_done(self.epochs_done)
        changed = self.begin_epoch(self.epochs_done)
        return {**record, "parameters_changed": True} if changed else record

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer that trains the model. With it, granularity=channel removes pruned
        channels from the live model once their pruning is final (trainer.compact_when_final),
        slicing the optimizer's state along; its param_groups then hold the new Parameters."""
        self.core.bind(optimizer)

    def finalize(self) -> dict:
        """Harden the masks at the final target, bake the zeros into the weights, remove the
        parametrizations, check each layer against its budget; returns the summary."""
        self.results = self.core.finalize()
        pruned = sum(r.pruned for r in self.results)
        params = sum(r.params for r in self.results)
        return {"method": self.config.method.name, "granularity": self.config.granularity.name,
                "unit": self.core.unit, "target_sparsity": self.core.final_sparsity,
                "achieved_sparsity": self.core.achieved_sparsity(),
                "pruned_weights": pruned, "prunable_weights": params,
                "layers": [dataclasses.asdict(r) for r in self.results],
                **self.core.summary_sections()}

    # --- the loop hooks (the CLI's trainer calls these; step()/end_epoch() call them for you)
    def before_step(self, step: int) -> None:
        """Before optimizer step `step` (0-based count of steps already taken)."""
        self.core.before_step(step)

    def after_backward(self) -> None:
        """After each backward (gradient criteria of schedule=epi read the gradients here;
        schedule=early_bird adds its L1 term on BN scales)."""
        self.core.after_backward()

    def begin_epoch(self, epoch: int) -> bool:
        """Before the first batch of `epoch`; whether the model's parameters changed."""
        return self.core.begin_epoch(epoch)

    def epoch_done(self, epochs_done: int) -> dict:
        """After the last step of an epoch (`epochs_done` epochs finished); returns what the
        pruner logs for it (EPI's value and trigger)."""
        return self.core.end_epoch(epochs_done)

    # --- what a loop or a report reads
    @property
    def unit(self) -> str:
        """What `sparsity` counts: weights, channels or blocks."""
        return self.core.unit

    @property
    def target_sparsity(self) -> float:
        return self.core.target_sparsity

    @property
    def final_sparsity(self) -> float:
        return self.core.final_sparsity

    def achieved_sparsity(self) -> float:
        return self.core.achieved_sparsity()

    def layer_sparsity(self) -> dict[str, float]:
        """Each pruned layer's achieved sparsity now (channels: its coupled group's)."""
        return self.core.achieved_by_layer()

    @property
    def num_prunable(self) -> int:
        return self.core.num_prunable

    @property
    def layers(self) -> list[str]:
        return self.core.layer_names

    @property
    def left_dense(self) -> list[str]:
        return self.core.left_dense

    def summary_sections(self) -> dict:
        return self.core.summary_sections()

    def export_plan(self) -> ExportPlan:
        return self.core.export_plan()

    @torch.no_grad()
    def compact(self, example: torch.Tensor) -> nn.Module:
        """After finalize(): the model with its pruned units physically removed, checked
        against the masked model on `example` (raises if the structure cannot remove units)."""
        from .export.compact import compact_model
        plan = self.export_plan()
        if plan.removed_units is None:
            raise PdpruneError(f"granularity={self.config.granularity.name}: {plan.reason}")
        model, _ = compact_model(self.model, plan.removed_units, example)
        return model

    # --- checkpoints
    def state_dict(self) -> dict:
        return {"core": self.core.state_dict(), "steps": self.steps,
                "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        """Call before loading the model's weights (a layer-pruned model regains its shape)."""
        self.core.load_state_dict(state["core"])
        self.steps, self.epochs_done = state["steps"], state["epochs_done"]


def _needs_input_shape(cfg: DictConfig) -> bool:
    return cfg.method.name != "dense" and (cfg.granularity.name == "channel"
                                           or cfg.method.name == "layerprune")
