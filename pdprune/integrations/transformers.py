"""Prune a model while Hugging Face's `transformers.Trainer` trains it.

    from pdprune.integrations import PruningCallback

    callback = PruningCallback(method="pdp", sparsity=0.9)
    trainer = Trainer(model=model, args=args, train_dataset=..., callbacks=[callback])
    trainer.train()              # masks on at train begin, hardened and baked at train end
    callback.summary             # what Pruning.finalize() returned

The callback drives a `pdprune.Pruning` (docs/api.md) from the Trainer's events: built at
`on_train_begin`, `step()` at every `on_step_end` (once per optimizer step, so gradient
accumulation is counted right), `end_epoch()` at `on_epoch_end`, `finalize()` at
`on_train_end`. Schedule lengths come from the Trainer: optimizer steps per epoch as the
Trainer counts them (batches / gradient_accumulation_steps, rounded up) and its epoch count.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..api import Pruning, compose_config
from ..errors import ConfigError, PdpruneError

try:
    from transformers import TrainerCallback
except ImportError as exc:
    raise PdpruneError(f"pdprune.integrations.transformers needs the package transformers "
                       f"(pip install transformers): {exc}") from None

log = logging.getLogger("pdprune")

# Default targets of a model without its own `default_target_include`: the Linear layers of its
# transformer encoder (attention q/k/v/output and the FFN, e.g. `bert.encoder.layer.0.*`), as
# pdprune's text models. Without it every Linear but the classifier would be pruned, the
# pooler included. Used only when some Linear layer matches; settings may name others.
ENCODER_INCLUDE = r"(^|\.)encoder\."


class PruningCallback(TrainerCallback):
    """Training-time pruning inside `transformers.Trainer`.

    The keywords are `pdprune.Pruning`'s (docs/api.md): method, sparsity (None: the config's,
    0.9), granularity (None: unstructured), schedule (None: the method's own) and `settings`,
    any other config key dotted ({"method.tau": 3e-4}); `input_shape` for granularity=channel
    (one sample, e.g. (128,) token ids). After training, `summary` holds what
    `Pruning.finalize()` returned and `pruning` the Pruning itself.
    """

    def __init__(self, method: str = "pdp", sparsity: float | None = None,
                 granularity: str | None = None, schedule: str | None = None,
                 settings: Mapping[str, Any] | None = None,
                 input_shape: tuple[int, ...] | None = None):
        if method == "layerprune":
            raise ConfigError("method", method, "removes blocks mid-training, whose parameters "
                              "the Trainer's optimizer cannot follow: use prune-train or your "
                              "own loop (docs/api.md)")
        # compose once now: a bad keyword fails here, not after the Trainer is built
        compose_config(method, sparsity, granularity, schedule, None, settings)
        self.method, self.sparsity, self.granularity = method, sparsity, granularity
        self.schedule, self.settings = schedule, dict(settings or {})
        self.input_shape = input_shape
        self.pruning: Pruning | None = None
        self.summary: dict | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None,
                       **kwargs):
        if self.pruning is not None:
            raise PdpruneError("PruningCallback: this callback already pruned a model; make a "
                               "new one for each training run")
        if state.global_step > 0:
            raise PdpruneError("PruningCallback: resuming from a Trainer checkpoint is not "
                               "supported (the masks' state is not in it); train from the start")
        model = unwrap(model)
        steps_per_epoch, epochs = schedule_length(args, state, train_dataloader)
        self.pruning = Pruning(model, self.method, self.sparsity, self.granularity,
                               self.schedule, steps_per_epoch=steps_per_epoch, epochs=epochs,
                               input_shape=self.input_shape,
                               settings=with_default_targets(model, self.settings))
        p = self.pruning
        log.info("pdprune: %s to %.3f of %d %s in %d layers (%d steps x %d epochs)",
                 self.method, p.final_sparsity, p.num_prunable, p.unit, len(p.layers),
                 steps_per_epoch, epochs)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        # the gradients of the whole accumulated step, after clipping: EPI's gradient criteria
        # rank channels, which a uniform clip scale does not change
        self.pruning.after_backward()

    def on_step_end(self, args, state, control, **kwargs):
        self.pruning.step()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.pruning.end_epoch()

    def on_train_end(self, args, state, control, **kwargs):
        self.summary = self.pruning.finalize()
        achieved = self.summary["achieved_sparsity"]
        state.log_history.append({"pdprune/achieved_sparsity": achieved,
                                  "step": state.global_step})
        log.info("pdprune: achieved sparsity %.4f (target %.4f)", achieved,
                 self.summary["target_sparsity"])


def schedule_length(args, state, train_dataloader) -> tuple[int, int]:
    """(optimizer steps per epoch, epochs) as the Trainer counts them; a loader without a
    length (an iterable dataset) is one epoch of max_steps."""
    try:
        batches = len(train_dataloader)
    except TypeError:
        batches = None
    if not batches:
        return max(1, state.max_steps), 1
    per_epoch = max(1, math.ceil(batches / args.gradient_accumulation_steps))
    return per_epoch, max(1, math.ceil(state.max_steps / per_epoch))


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself under DataParallel / DistributedDataParallel / torch.compile wrappers
    (the Trainer usually passes it unwrapped already)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def with_default_targets(model: nn.Module, settings: dict) -> dict:
    """`settings` plus method.targets.include = the encoder's layers when the user named no
    targets, the model has no defaults of its own, and it has an encoder."""
    if "method.targets.include" in settings or getattr(model, "default_target_include", None):
        return settings
    if any(isinstance(m, nn.Linear) and re.search(ENCODER_INCLUDE, name)
           for name, m in model.named_modules()):
        return {**settings, "method.targets.include": [ENCODER_INCLUDE]}
    return settings
