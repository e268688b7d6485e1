"""One run: config -> data, model, pruning, trainer; then train, harden, export, summarise."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .api import Pruning
from .config.validate import validate
from .data import build_data
from .data.bundle import FirstBatches
from .distributed import (
    SINGLE,
    RankSlice,
    World,
    from_main,
    max_difference_across_ranks,
    start,
    world_from_env,
)
from .distributed import backend as dist_backend
from .export.exporter import export_latency, export_run, remaining_model, save_weights
from .measure import (
    build_summary,
    format_summary,
    layer_macs,
    parameter_counts,
    remaining_network,
    write_summary,
)
from .measure.training_cost import calibrate_dense_epoch, measured_time, network_size, training_cost
from .models import build_model
from .models.text_names import TEXT_MODELS
from .models.width_match import matched_width
from .pruning.build import mask_labels
from .pruning.targets import select_targets
from .tracking import RunContext, Tracker, build_tracker
from .train import (
    Trainer,
    build_lr_scheduler,
    build_optimizer,
    check_same_run,
    evaluate,
    load_checkpoint,
    resolve_checkpoint,
)
from .train.distill import WEIGHTS, Distiller, prepare_teacher
from .train.evaluate import autocast
from .train.metrics import MetricsLog

log = logging.getLogger("pdprune")


def resolve_device(name: str, world: World = SINGLE) -> torch.device:
    """auto: CUDA when present; with several ranks each takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world.active:
        name = f"cuda:{world.local_rank}"
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; none on the CPU, where it is slower than fp32."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_labels(cfg: DictConfig) -> dict[str, str]:
    """Names for the summary when no Hydra choices are at hand (library use)."""
    return {"model": cfg.model.name, "dataset": cfg.dataset.name, "method": cfg.method.name,
            "granularity": cfg.granularity.name, "schedule": cfg.schedule.name}


def build_trainer(cfg: DictConfig, run_dir: Path, world: World = SINGLE) -> Trainer:
    """Everything the loop needs, built in a fixed order so a seed fixes the whole run."""
    device = resolve_device(cfg.trainer.device, world)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import ConfigError
        raise ConfigError("trainer.device", cfg.trainer.device, "CUDA is not available here")
    torch.set_flush_denormal(cfg.trainer.flush_denormal)  # a no-op where the CPU cannot
    seed_everything(cfg.seed)
    data = build_data(cfg.dataset, cfg.seed, device, cfg.model)
    if cfg.trainer.max_train_batches:
        data.train = FirstBatches(data.train, cfg.trainer.max_train_batches)
    if world.active:  # every rank walks the global batches and trains on its slice
        data.train = RankSlice(data.train, world)
    if cfg.model.get("match_nonzeros") is not None:
        narrow_to_match(cfg, data)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    distiller = None
    if cfg.trainer.distill.enabled:
        teacher = prepare_teacher(
            cfg, run_dir, build=lambda: build_model(cfg.model, data.input_shape,
                                                    data.num_classes).to(device),
            fine_tune=lambda dense, folder: fine_tune_teacher(cfg, dense, data, device, folder,
                                                              world))
        if cfg.trainer.distill.student_from_teacher:
            model.load_state_dict(teacher.state_dict())
        distiller = Distiller(teacher, cfg.trainer.distill.temperature,
                              cfg.trainer.distill.weight)
    pruning = Pruning.from_config(cfg, model, steps_per_epoch=len(data.train),
                                  input_shape=data.input_shape,
                                  train_batches=lambda: one_pass(data.train))
    return make_trainer(cfg, model, data, pruning, device, run_dir, cfg.trainer.epochs,
                        distiller, world)


def narrow_to_match(cfg: DictConfig, data) -> None:
    """model.match_nonzeros=S: replace model.width by the width whose dense model has as many
    parameters as the model at model.width has non-zeros at sparsity S (then every later
    build_model, checkpoint and summary sees the narrow width)."""
    wide = cfg.model.width
    width, params, target = matched_width(
        cfg.model, lambda c: build_model(c, data.input_shape, data.num_classes),
        lambda model: [m for _, m in select_targets(model, cfg.method.targets)],
        cfg.model.match_nonzeros)
    cfg.model.width = width
    log.info("model.width %.3g -> %.4g: %d parameters, the non-zeros of width %.3g at sparsity "
             "%.3g: %d", wide, width, params, wide, cfg.model.match_nonzeros, target)


def make_trainer(cfg: DictConfig, model, data, pruning: Pruning, device: torch.device,
                 run_dir: Path,
                 epochs: int, distiller: Distiller | None = None,
                 world: World = SINGLE) -> Trainer:
    optimizer = build_optimizer(cfg.optim, model)
    lr_scheduler = build_lr_scheduler(cfg.optim, optimizer, epochs)
    return Trainer(model, data, pruning, optimizer, lr_scheduler, epochs=epochs,
                   device=device, amp_dtype=resolve_amp(cfg.trainer.amp, device),
                   run_dir=run_dir, label_smoothing=cfg.trainer.label_smoothing,
                   grad_clip_norm=cfg.trainer.grad_clip_norm,
                   progress=cfg.trainer.progress,
                   config=OmegaConf.to_container(cfg, resolve=True),
                   channels_last=device.type == "cuda" if cfg.trainer.channels_last is None
                   else cfg.trainer.channels_last,
                   compile_model=cfg.trainer.compile, distiller=distiller, world=world,
                   log_every_n_steps=cfg.trainer.log_every_n_steps)


def fine_tune_teacher(cfg: DictConfig, model, data, device: torch.device, folder: Path,
                      world: World = SINGLE) -> None:
    """Dense fine-tuning of the distillation teacher, for distill.teacher_epochs, into `folder`
    (its metrics.jsonl, checkpoint and model.safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    dense = OmegaConf.merge(cfg, {"method": {"name": "dense"}})
    pruning = Pruning.from_config(dense, model, steps_per_epoch=len(data.train))
    trainer = make_trainer(cfg, model, data, pruning, device, folder,
                           cfg.trainer.distill.teacher_epochs, world=world)
    trainer.fit()
    val = evaluate(model, data.val, device, trainer.amp_dtype)
    log.info("distillation: dense teacher val top1 %.4f", val["top1"])
    if world.is_main:
        save_weights(model, folder / WEIGHTS)


def one_pass(loader):
    """The loader's batches once, leaving its state as it was: an extra pass (importance
    criteria) does not change the order or augmentation of any training epoch."""
    state = loader.state_dict()
    try:
        yield from loader
    finally:
        loader.load_state_dict(state)


def sample_batch(loader, size: int = 64) -> torch.Tensor:
    """Up to `size` real inputs: the first batch(es) of a loader, for export checks. Batches
    of text are cut to their own longest sequence: only batches of one shape are joined."""
    parts, have = [], 0
    for x, _ in loader:
        if parts and x.shape[1:] != parts[0].shape[1:]:
            break
        parts.append(x)
        have += len(x)
        if have >= size:
            break
    return torch.cat(parts)[:size]


def measures_latency(cfg: DictConfig) -> bool:
    """export.latency, and always for layerprune (latency is how it is judged) on image models."""
    return cfg.export.latency or (cfg.method.name == "layerprune"
                                  and cfg.model.name not in TEXT_MODELS)


def measured_training_cost(cfg: DictConfig, pruning: Pruning, data, summary: dict) -> dict:
    """What the run's training cost (measure/training_cost.py): the seconds each epoch took
    against the dense run's, and MACs and parameters of the network each epoch trained, as
    metrics.jsonl measured them on the live model: smaller once channels left it (compacted
    training) or blocks were removed; the unpruned network while masks only zero units (weights,
    PDP's soft channel masks, trainer.compact_when_final=false)."""
    records = MetricsLog(Path(summary["run_dir"]) / "metrics.jsonl").read()[:summary["epochs"]]
    pruned = [r["achieved_sparsity"] > 0 for r in records]  # by each epoch's end

    def unpruned() -> nn.Module:
        return build_model(cfg.model, data.input_shape, data.num_classes)

    dense = network_size(unpruned(), data.input_shape)

    def calibrate(steps: int = 5, warmup: int = 2) -> dict:
        """A short timed dense run (the run had no dense epoch): the trainer's step (device,
        autocast, memory format, loss) on the run's first training batch, and a validation."""
        device = resolve_device(cfg.trainer.device, world_from_env())
        amp_dtype = resolve_amp(cfg.trainer.amp, device)
        channels_last = (device.type == "cuda" if cfg.trainer.channels_last is None
                         else cfg.trainer.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        batches = one_pass(data.train)
        try:
            x, y = next(batches)
        finally:
            batches.close()
        x, y = x.to(device), y.to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=layout)

        def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast(device, amp_dtype):
                logits = model(x)
            return F.cross_entropy(logits.float(), y,
                                   label_smoothing=cfg.trainer.label_smoothing)

        return calibrate_dense_epoch(lambda: unpruned().to(device, memory_format=layout),
                                     (x, y), lambda model: build_optimizer(cfg.optim, model),
                                     step, len(data.train),
                                     lambda model: evaluate(model, data.val, device, amp_dtype),
                                     steps=steps, warmup=warmup)

    samples = min(data.train.num_samples, len(data.train) * cfg.dataset.batch_size)
    return {**training_cost([r["macs"] for r in records], dense["macs"], samples,
                            [r["params"] for r in records],
                            [r.get("nonzero_macs", r["macs"]) for r in records]),
            "dense_params": dense["params"],
            **measured_time([r["epoch_time_s"] for r in records], [not p for p in pruned],
                            calibrate)}


def run(cfg: DictConfig, run_dir: Path, labels: dict[str, str] | None = None) -> dict:
    """Train, prune, evaluate and export one configuration into run_dir; returns the summary."""
    validate(cfg)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    world = world_from_env()
    start(world, resolve_device(cfg.trainer.device, world))
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = from_main(run_dir)  # Hydra named it from the clock on each rank: rank 0's wins
    tracker = build_tracker(cfg.logger) if world.is_main else Tracker()  # a missing extra: now
    trainer = build_trainer(cfg, run_dir, world)
    if cfg.trainer.resume:
        path = resolve_checkpoint(cfg.trainer.resume)
        payload = load_checkpoint(path)
        check_same_run(payload["config"], trainer.config)
        trainer.load_checkpoint(payload)
        log.info("resumed from %s after epoch %d", path, trainer.state.epoch)
    trainer.tracker = tracker
    context = RunContext.current(trainer.config, run_dir)
    context.resumed, context.start_step = bool(cfg.trainer.resume), trainer.state.step
    with tracker.running(context):
        summary = train_and_export(cfg, trainer, run_dir, labels, world)
        tracker.log_summary(summary)
    return summary


def train_and_export(cfg: DictConfig, trainer: Trainer, run_dir: Path,
                     labels: dict[str, str] | None, world: World) -> dict:
    """Train, finalize the masks, evaluate, export, measure; summary.json (rank 0)."""
    data, model, pruning = trainer.data, trainer.model, trainer.pruning
    log.info("%s: %d prunable weights in %d %s, %d train batches/epoch, device %s",
             cfg.method.name, pruning.num_prunable, len(pruning.layers),
             "blocks" if pruning.unit == "blocks" else "layers", len(data.train), trainer.device)
    state = trainer.fit()

    pruning.finalize()
    if world.active:  # identical on every rank, or the run is wrong: measure, then rank 0 goes on
        difference = max_difference_across_ranks(model)
        if not world.is_main:
            return {}
        log.info("data-parallel: %d ranks, weights and masks differ by at most %.3g across ranks",
                 world.size, difference)
    accuracy = {split: evaluate(model, loader, trainer.device, trainer.amp_dtype)
                for split, loader in (("val", data.val), ("test", data.test))}
    batch = sample_batch(data.test)
    plan = pruning.export_plan()
    exported, export_info = export_run(cfg.export, model, plan, batch, run_dir)
    latency = None
    if measures_latency(cfg):  # the same architecture unpruned vs what was exported
        dense = build_model(cfg.model, data.input_shape, data.num_classes)
        onnx_file = run_dir / export_info["onnx_file"] if "onnx_file" in export_info else None
        latency = export_latency(dense, exported, batch, list(cfg.export.latency_batch_sizes),
                                 cfg.export.latency_warmup, cfg.export.latency_repeats, onnx_file,
                                 compiled=cfg.export.latency_compiled)
    kept = remaining_model(model, plan, batch, exported)  # channels: what non-zeros count
    # the dense architecture's MACs and parameters: the live model, unless training compacted it
    dense_arch, arch_device = (model, trainer.device) if plan.dense_state is None else \
        (build_model(cfg.model, data.input_shape, data.num_classes), torch.device("cpu"))
    summary = build_summary(
        labels=labels or default_labels(cfg), unit=pruning.unit,
        target=pruning.final_sparsity, achieved=pruning.achieved_sparsity(),
        layers=pruning.results, left_dense=pruning.left_dense,
        macs=layer_macs(dense_arch, data.input_shape, arch_device),
        params=parameter_counts(dense_arch), accuracy=accuracy, epochs=state.epoch,
        train_time_s=state.train_time_s, run_dir=run_dir, input_shape=data.input_shape,
        num_classes=data.num_classes, latency=latency, export=export_info,
        sections=pruning.summary_sections(),
        remaining=None if kept is None else remaining_network(kept, data.input_shape),
        masks=mask_labels(cfg.method.name, cfg.method.get("harden_at", "end")),
        last_epoch=(trainer.metrics.read() or [None])[-1])
    if world.active:
        summary["distributed"] = {"world_size": world.size, "backend": dist_backend(),
                                  "max_difference_across_ranks": difference,
                                  "global_batch_size": cfg.dataset.batch_size}
    if cfg.model.get("match_nonzeros") is not None:
        summary["model_width"] = cfg.model.width
    cost = measured_training_cost(cfg, pruning, data, summary)
    if cost is not None:
        summary["training_cost"] = cost
    write_summary(run_dir / "summary.json", summary)
    print(format_summary(summary), flush=True)
    return summary
