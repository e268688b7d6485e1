"""Start-up checks: compose and validate every job of a command line before Hydra creates any
run folder, so a bad key or value costs one line of output and nothing on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError, PdpruneError
from . import CONFIG_DIR
from .compose_errors import describe
from .validate import validate

INFO_FLAGS = ("help", "hydra_help", "info", "cfg", "shell_completion", "resolve")
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"


def user_config_dir(argv: list[str]) -> list[str]:
    """Hydra's `--config-dir DIR` adds the user's own groups (DIR/model/mynet.yaml is then
    `model=mynet`) to the run; the same search path for the checks, as an override. A command
    line that sets hydra.searchpath itself is composed as it is."""
    args = get_args_parser().parse_args(argv)
    if not args.config_dir or any(o.startswith("hydra.searchpath=") for o in args.overrides):
        return []
    return [f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]"]


def job_overrides(argv: list[str]) -> list[list[str]] | None:
    """The override list of every job `argv` would run (a sweep's: the command line's and
    those of `hydra.sweeper.params`, e.g. from an experiment=); None for Hydra's informational
    flags. Call inside an initialised Hydra config dir. Each list ends with the search path of
    `--config-dir`, if given (user_config_dir)."""
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in INFO_FLAGS):
        return None
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(args.overrides)
    except HydraException as exc:
        raise PdpruneError(describe(exc)) from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if not args.multirun:
        if sweeps:
            raise PdpruneError(f"{sweeps[0]}: a sweep needs --multirun (-m)")
        return [args.overrides + user_config_dir(argv)]
    first = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeper = _compose(first + user_config_dir(argv), hydra=True).hydra.sweeper
    params = sweeper.get("params") or {}
    try:  # as Hydra's BasicSweeper does: the recipe's sweep first, the command line wins
        parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parsed
    except HydraException as exc:
        raise PdpruneError(f"hydra.sweeper.params: {describe(exc)}") from None
    if sweeper.get("_target_") != BASIC_SWEEPER:  # e.g. Optuna's (hparams_search=): it picks
        _check_installed(sweeper._target_)
        # the searched values trial by trial; check the fixed part, searched keys at their defaults
        return [[o.input_line for o in parsed if not o.is_sweep_override()]
                + user_config_dir(argv)]
    jobs = BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
    return [job + user_config_dir(argv) for job in jobs]


def _check_installed(target: str) -> None:
    """A sweeper Hydra cannot find among its plugins (not installed, or an editable install
    that hides hydra_plugins/ from Hydra's scan): one line, not Hydra's traceback."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    found = {f"{p.__module__}.{p.__name__}" for p in Plugins.instance().discover(Sweeper)}
    if target not in found:
        raise ConfigError("hydra.sweeper._target_", target, "not installed as a Hydra plugin "
                          "(hparams_search: in the pdprune checkout, pip install -e "
                          "\".[tuning]\" --config-settings editable_mode=compat)")


def _compose(overrides: list[str], hydra: bool = False):
    try:
        return compose("train", overrides=overrides, return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        raise PdpruneError(describe(exc)) from None


def check(argv: list[str]) -> int:
    """Compose and validate each job; raise PdpruneError (one line) on the first bad one.
    Returns the number of jobs checked."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3",
                               job_name="prune-train"):
        jobs = job_overrides(argv)
        for overrides in jobs or []:
            cfg = _compose(overrides)
            try:
                validate(cfg)
                if cfg.trainer.resume:
                    _check_resumable(cfg)
                _check_builds(cfg)
                if cfg.model.get("checkpoint"):  # loads, and fits the model (torch: on use)
                    _check_checkpoint(cfg)
                _check_budget(cfg)
            except OmegaConfBaseException as exc:  # e.g. an interpolation that cannot resolve
                raise PdpruneError(f"{exc.full_key}: {str(exc).splitlines()[0]}") from None
        if jobs and len(jobs) == 1 and not _is_multirun(argv):
            _note_ignored(cfg, jobs[0])
    return len(jobs or [])


BUILT_FROM_NAMES = ("custom", "torchvision", "timm")  # a user's import path or library name


def _check_builds(cfg) -> None:
    """model=custom / torchvision / timm: the named model imports, builds and gives one output
    per class (on the meta device: no memory, no weights), or one line naming the key."""
    if cfg.model.name not in BUILT_FROM_NAMES:
        return
    from ..data.locate import nominal_input
    from ..models import build_on_meta
    from ..models.custom import check_output, locate, target_of

    shape = nominal_input(cfg.dataset)
    if shape is None:  # sizes known once the data is read: the import at least
        if cfg.model.name == "custom":
            locate(target_of(cfg.model))
        return
    key = "model._target_" if cfg.model.name == "custom" else "model.arch"
    check_output(build_on_meta(cfg.model, *shape), *shape, key, cfg.model[key.split(".")[1]])


def _check_budget(cfg) -> None:
    """A target the model cannot meet (a layer or a channel group left with nothing) fails
    here, on the model built on the meta device. Text models (a pretrained encoder) and
    model.match_nonzeros (a width derived at start) are checked when the run builds them."""
    from ..data.locate import nominal_input
    from ..models.text_names import TEXT_MODELS

    shape = nominal_input(cfg.dataset)
    if (cfg.method.name in ("dense", "layerprune") or shape is None
            or cfg.model.name in TEXT_MODELS or cfg.model.get("match_nonzeros") is not None):
        return  # layerprune's block count: validate's _check_blocks
    from ..models import build_on_meta
    from ..pruning import check_targets

    input_shape, classes = shape
    check_targets(cfg, build_on_meta(cfg.model, input_shape, classes), input_shape)


def _check_checkpoint(cfg) -> None:
    """model.checkpoint: the file loads (safely) and is a state_dict, and for an image model its
    keys and shapes fit the model, built on the meta device (no memory, no data read). Text
    models (a pretrained encoder to load) and model.match_nonzeros (a width derived at start)
    are checked when the run builds them. Here, not in models/: models do not read datasets."""
    import torch

    from ..data.locate import nominal_input
    from ..models import build_on_meta
    from ..models.checkpoint import check_fits, read_state_dict, shallower, weights_file
    from ..models.text_names import TEXT_MODELS

    path = weights_file(cfg.model.checkpoint)
    state = read_state_dict(path)
    shape = nominal_input(cfg.dataset)
    if (shape is None or cfg.model.name in TEXT_MODELS
            or cfg.model.get("match_nonzeros") is not None):
        return
    model = build_on_meta(cfg.model, *shape)
    with torch.device("meta"):
        shallower(model, path)
    check_fits(model, state, path)


def _is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


def _note_ignored(cfg, overrides: list[str]) -> None:
    """A single run given a setting it does not use, or a pairing that defeats its purpose: say
    so on stderr (in a sweep such as
    `-m method=dense,pdp sparsity=0.9` the dense job ignoring it is expected)."""
    typed = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    used = cfg.model.get("match_nonzeros") is not None  # the small-dense arm sizes by it
    if cfg.method.name == "dense" and "sparsity" in typed and cfg.sparsity != 0 and not used \
            and os.environ.get("RANK", "0") == "0":
        print(f"prune-train: note: method=dense is the dense baseline and ignores "
              f"sparsity={cfg.sparsity} (its summary says target 0)", file=sys.stderr, flush=True)
    # harden_at belongs to the soft-mask methods (PDP)
    if cfg.schedule.name == "epi" and cfg.method.get("harden_at") == "end" \
            and os.environ.get("RANK", "0") == "0":
        print(f"prune-train: note: schedule=epi with method={cfg.method.name}: soft masks keep "
              "every channel in the network until the end, so training gets no cheaper after the "
              "trigger; method=magnitude prunes them at once (as the EPI paper does), or set "
              "method.harden_at=ramp_end", file=sys.stderr, flush=True)


def _check_resumable(cfg) -> None:
    """The checkpoint exists, loads (weights_only: nothing in it runs) and was written by this
    same config (before Hydra rewrites the run folder's .hydra/ files)."""
    from ..train.checkpoint import check_same_run, load_checkpoint, resolve_checkpoint

    saved = load_checkpoint(resolve_checkpoint(cfg.trainer.resume))["config"]
    check_same_run(saved, OmegaConf.to_container(cfg, resolve=True))


def with_resume(argv: list[str]) -> list[str]:
    """`trainer.resume=DIR` continues the run in DIR: replay its saved overrides (later ones on
    the command line win) and write into the same folder."""
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.resume=")), None)
    if not resume or resume in ("null", "None"):
        return argv
    run_dir = Path(resume).expanduser()
    if run_dir.is_file():  # a checkpoint: <run>/checkpoints/last.pt
        run_dir = run_dir.parent.parent
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError("trainer.resume", resume, f"not a run folder (no {saved})")
    previous = [o for o in yaml.safe_load(saved.read_text()) or []
                if not o.startswith("trainer.resume=")]
    has_dir = any(a.startswith("hydra.run.dir=") for a in argv)
    return previous + argv + ([] if has_dir else [f"hydra.run.dir={run_dir}"])
