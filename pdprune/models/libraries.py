"""model=torchvision / model=timm: any classification model of either library, by name.

Random init only: no weights are ever downloaded (model.checkpoint loads local ones). Adapted to
the data as the zoo is: the class count from the dataset, and the input channels (torchvision:
its first conv replaced, keeping its name so a checkpoint's other keys still load; timm: its
own `in_chans`). Keys under `model` past name/arch/checkpoint are the builder's own arguments
(e.g. model.image_size=32 for torchvision's ViTs, model.drop_path_rate=0.1 for timm).
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import ConfigError, PdpruneError

OWN_KEYS = ("name", "arch", "checkpoint")
# defaults that keep the model a plain classifier (its forward returns the logits in training)
TORCHVISION_DEFAULTS = {"googlenet": {"aux_logits": False, "init_weights": True},
                        "inception_v3": {"aux_logits": False, "init_weights": True}}


def _arch(cfg: DictConfig) -> str:
    if OmegaConf.is_missing(cfg, "arch") or not cfg.get("arch"):
        raise PdpruneError(f"model.arch: model={cfg.name} needs the library's model name, "
                           "e.g. model.arch=resnet18")
    return str(cfg.arch)


def _known(arch: str, names: list[str], library: str, listing: str) -> None:
    """ConfigError naming a few close names when `arch` is not one of `names`."""
    if arch in names:
        return
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    hint = f"close: {', '.join(close)}" if close else f"all names: {listing}"
    raise ConfigError("model.arch", arch, f"no such {library} classification model ({hint})")


def _arguments(cfg: DictConfig) -> dict[str, object]:
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in OWN_KEYS}


def _built(build, arch: str, **kwargs) -> nn.Module:
    try:
        return build(**kwargs)
    except Exception as exc:  # e.g. an argument the model does not take: one line
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise ConfigError("model.arch", arch, f"building it failed: {type(exc).__name__}: "
                                              f"{first.strip()}") from None


def with_in_channels(model: nn.Module, channels: int) -> nn.Module:
    """Replace the first Conv2d (the stem) by one reading `channels` channels, same name and
    everything else alike; no change when it already does."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)),
                      (None, None))
    if conv is None or conv.in_channels == channels:
        return model
    groups = conv.groups if conv.groups == 1 else channels  # a depthwise stem stays depthwise
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, groups, conv.bias is not None, conv.padding_mode)
    model.set_submodule(name, new.to(conv.weight.device))
    return model


def build_torchvision(cfg: DictConfig, input_shape: tuple[int, ...],
                      num_classes: int) -> nn.Module:
    """torchvision.models.get_model(arch, weights=None, num_classes=...), first conv adapted."""
    from torchvision import models

    arch = _arch(cfg)
    _known(arch, models.list_models(module=models), "torchvision",
           "torchvision.models.list_models(module=torchvision.models)")
    args = TORCHVISION_DEFAULTS.get(arch, {}) | _arguments(cfg)
    model = _built(models.get_model, arch, name=arch, weights=None, num_classes=num_classes,
                   **args)
    return with_in_channels(model, input_shape[0])


def build_timm(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """timm.create_model(arch, pretrained=False, num_classes=..., in_chans=...)."""
    try:
        import timm
    except ImportError:
        raise PdpruneError("model=timm needs timm: pip install 'pdprune[timm]'") from None
    arch = _arch(cfg)
    _known(arch.split(".")[0], timm.list_models(), "timm", "timm.list_models()")  # a .tag
    return _built(timm.create_model, arch, model_name=arch, pretrained=False,
                  num_classes=num_classes, in_chans=input_shape[0], **_arguments(cfg))
