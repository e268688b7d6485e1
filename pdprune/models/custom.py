"""model=custom: the user's own model, built by Hydra's instantiate from `model._target_`.

The callable (a class or a function returning an nn.Module) receives every key under `model`
but ours (OWN_KEYS) as keyword arguments, plus what the data decides: `num_classes`, and
`in_channels` / `input_shape` when its signature names them. A target that cannot be imported
or built is one line naming model._target_.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import ConfigError, PdpruneError

KEY = "model._target_"
OWN_KEYS = ("name", "checkpoint", "match_nonzeros")  # pdprune's, not the callable's
FROM_DATA = ("num_classes", "in_channels", "input_shape")  # filled in from the dataset


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def locate(target: str) -> Callable:
    """The object `target` names (module.attr, module.Class.method...), importing its module;
    ConfigError naming model._target_ and why when it cannot."""
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(KEY, target, "needs module.name, e.g. my_models.Net")
    for i in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise ConfigError(KEY, target, f"importing {module} failed: "
                                           f"{_first_line(exc)}") from None
        except Exception as exc:  # the user's module raised while importing
            raise ConfigError(KEY, target, f"importing {module} failed: "
                                           f"{_first_line(exc)}") from None
        for j in range(i, len(parts)):
            if not hasattr(obj, parts[j]):
                raise ConfigError(KEY, target, f"{'.'.join(parts[:j])} has no {parts[j]}")
            obj = getattr(obj, parts[j])
        if not callable(obj):
            raise ConfigError(KEY, target, f"is a {type(obj).__name__}, not a class or function")
        return obj
    raise ConfigError(KEY, target, f"no module named {parts[0]} (in the current folder "
                                   f"{os.getcwd()} or the installed packages)")


def target_of(cfg: DictConfig) -> str:
    """cfg._target_, or one line saying that model=custom needs it."""
    if OmegaConf.is_missing(cfg, "_target_") or not cfg.get("_target_"):
        raise PdpruneError(f"{KEY}: model=custom needs the import path of your model's class "
                           "or function, e.g. model._target_=my_models.Net")
    return str(cfg._target_)


def data_arguments(target: Callable, input_shape: tuple[int, ...],
                   num_classes: int) -> dict[str, object]:
    """What the data decides, for the parameters `target` takes: num_classes (also through
    **kwargs), in_channels and input_shape (only when named: a **kwargs forwarded to nn.Module
    would refuse them)."""
    try:
        params = inspect.signature(target).parameters  # a class: its __init__, less self
    except (TypeError, ValueError):  # a builtin without a signature: pass the class count
        return {"num_classes": num_classes}
    named = {n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    values = {"num_classes": num_classes, "in_channels": input_shape[0],
              "input_shape": tuple(input_shape)}
    return {k: v for k, v in values.items()
            if k in named or (k == "num_classes" and takes_any)}


def build_custom(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """cfg._target_(**its arguments), through hydra.utils.instantiate (so an argument may be
    a `_target_` node of its own)."""
    from hydra.utils import instantiate

    target = target_of(cfg)
    given = [k for k in FROM_DATA if k in cfg]
    if given:
        raise ConfigError(f"model.{given[0]}", cfg[given[0]], "comes from the dataset; leave "
                                                              "it out")
    call = locate(target)
    args = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
            if k not in OWN_KEYS}
    args.setdefault("_convert_", "all")  # plain lists and dicts, as a Python caller passes
    try:
        model = instantiate(args, **data_arguments(call, input_shape, num_classes))
    except Exception as exc:  # anything the user's code raises: one line naming the target
        raise ConfigError(KEY, target, f"building it failed: "
                                       f"{_first_line(exc.__cause__ or exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(KEY, target, f"returned a {type(model).__name__}, not a torch "
                                       "nn.Module")
    return model


def check_output(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, key: str,
                 value: object) -> None:
    """A forward pass of a meta-device `model` on a batch of 2 gives logits of (2, classes);
    ConfigError naming `key` when it does not. Code that needs real values (a .item(), data-
    dependent shapes) cannot run on the meta device: the run itself finds out."""
    import torch

    try:
        with torch.device("meta"), torch.no_grad():
            out = model.eval()(torch.empty(2, *input_shape))
    except NotImplementedError:
        return
    except Exception as exc:
        if "meta" in str(exc):
            return
        raise ConfigError(key, value, f"does not run on inputs of shape {tuple(input_shape)}: "
                                      f"{_first_line(exc)}") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, num_classes):
        raise ConfigError(key, value, f"gives {shape} for a batch of 2, not (2, {num_classes}) "
                                      f"logits ({num_classes} classes in the data)")
