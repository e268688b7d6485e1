"""Which modules of a model get a weight mask."""

from __future__ import annotations

import re

from omegaconf import DictConfig
from torch import nn

from ..errors import ConfigError


def select_targets(model: nn.Module, cfg: DictConfig) -> list[tuple[str, nn.Module]]:
    """(name, module) of every prunable layer, in registration order.

    A layer is prunable when its class name is in cfg.layer_types, a cfg.include regex matches
    its name (when none is given: one of the model's `default_target_include`, if it has them,
    e.g. a text model's encoder) and no cfg.exclude regex does; with cfg.keep_output_layer the
    last such layer (the classifier) stays dense, with cfg.skip_depthwise so do depthwise
    convolutions.
    """
    types = set(cfg.layer_types)
    known = {m.__class__.__name__ for m in model.modules()}
    unknown = types - known - {"Conv1d", "Conv2d", "Conv3d", "Linear"}
    if unknown:
        raise ConfigError("method.targets.layer_types", sorted(unknown),
                          f"no such layer type in the model (it has {', '.join(sorted(known))})")
    patterns = [re.compile(p) for p in cfg.exclude]
    include = [re.compile(p) for p in (cfg.get("include") or
                                       getattr(model, "default_target_include", ()))]
    layers = [(name, m) for name, m in model.named_modules()
              if m.__class__.__name__ in types and getattr(m, "weight", None) is not None]
    if cfg.keep_output_layer and layers:
        layers = layers[:-1]  # the classifier: the last such layer of the whole model
    return [(name, m) for name, m in layers
            if (not include or any(p.search(name) for p in include))
            and not any(p.search(name) for p in patterns)
            and not (cfg.skip_depthwise and is_depthwise(m))]


def is_depthwise(module: nn.Module) -> bool:
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == getattr(module, "in_channels", 0)
