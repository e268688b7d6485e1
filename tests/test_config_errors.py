"""Every config error is one line naming the key and value, before any run folder exists."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pdprune.config import CONFIG_DIR
from pdprune.config.preflight import check
from pdprune.errors import PdpruneError

BAD = [
    # targets the model cannot meet, found on the model built on the meta device
    (["sparsity=0.999999", "model.width=0.25"], "sparsity=0.999999: method.budget=global would "
     "prune 8192 of 8192 prunable weights; at most 0.9998"),
    (["granularity=channel", "sparsity=0.999"], "sparsity=0.999: granularity=channel can remove "
     "at most 0.9688 of channels"),
    (["method=foo"], "method=foo: no such option"),
    (["sparsity=1.0"], "sparsity=1.0: must be in [0, 1)"),
    (["sparsity=-0.1"], "sparsity=-0.1: must be in [0, 1)"),
    (["sparsity=abc"], "sparsity=abc: Value 'abc'"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be a positive"),
    (["schedule.ramp_epochs=40"], "schedule.ramp_epochs=40: warm-up 3 (derived from "
     "trainer.epochs=30) + ramp 40 epochs reaches the target at epoch 43, after training ends"),
    (["method=gmp", "schedule.end_epoch=31"], "schedule.end_epoch=31: ends after training ends"),
    (["method=magnitude", "schedule.epoch=30"], "schedule.epoch=30: must be in [0, 30)"),
    (["dataset=fashion_mnist", "dataset.root=/no/such/dir"], "dataset.root=/no/such/dir: no such"),
    (["method.tauu=3"], "method.tauu: no such key"),
    (["model=lenet", "model.hidden=[3]"], "model.hidden: no such key"),
    (["method.budget=foo"], "method.budget=foo: must be one of uniform, global"),
    (["-m", "sparsity=0.5,1.5"], "sparsity=1.5: must be in [0, 1)"),
    (["sparsity=0.5,0.9"], "a sweep needs --multirun"),
    (["export.compact=true"], "export.compact=true: needs granularity=channel"),
    (["granularity=channel", "method=dense", "export.compact=true"], "export.compact=true: needs"),
    # non-finite numbers: every range check would let nan through
    (["optim.lr=nan"], "optim.lr=nan: must be a finite number"),
    (["optim.lr=inf"], "optim.lr=inf: must be a finite number"),
    (["method.tau=nan"], "method.tau=nan: must be a finite number"),
    (["sparsity=nan"], "sparsity=nan: must be a finite number"),  # not schedule.target=nan
    (["optim=adamw", "optim.betas=[0.9,-inf]"], "optim.betas[1]=-inf: must be a finite number"),
    (["trainer.device=cuda:99"], "trainer.device=cuda:99: "),  # no GPU, or not that many
    # keys added with + (or ++) are checked against the schemas too
    (["+trainer.epoch=3"], "trainer.epoch=3: no such key (did you mean trainer.epochs?)"),
    (["++trainer.epoch=3"], "trainer.epoch=3: no such key (did you mean trainer.epochs?)"),
    (["+method.targets.includ=[a]"],
     "method.targets.includ: no such key (did you mean method.targets.include?)"),
    (["+foo=1"], "foo=1: no such key in the config"),
    (["+trainer.distill.foo=1"], "trainer.distill.foo=1: no such key in trainer.distill"),
    (["+trainer.epochs=3"], "+trainer.epochs: the key exists; set it without the +"),
    (["sparsityy=0.5"], "sparsityy: no such key (did you mean sparsity?)"),
    # n:m names the key that was set
    (["granularity=nm", "granularity.m=0"], "granularity.m=0: must be >= 1"),
    (["granularity=nm", "granularity.m=0", "granularity.n=3"], "granularity.m=0: must be >= 1"),
    (["granularity=nm", "granularity.m=2"], "granularity.m=2: must be above granularity.n=2"),
    (["granularity=nm", "granularity.n=4"], "granularity.n=4: must be in [1, granularity.m=4)"),
    (["granularity=nm", "granularity.n=0"], "granularity.n=0: must be in [1, granularity.m=4)"),
    # export's latency measurement
    (["export.latency_batch_sizes=[0]"], "export.latency_batch_sizes=[0]: must be a non-empty"),
    (["export.latency_batch_sizes=[]"], "export.latency_batch_sizes=[]: must be a non-empty"),
    (["export.latency_batch_sizes=[-1,4]"], "export.latency_batch_sizes=[-1, 4]: must be"),
    (["export.latency_repeats=0"], "export.latency_repeats=0: must be >= 1"),
    (["export.latency_warmup=-1"], "export.latency_warmup=-1: must be >= 0"),
    # layer counts, from the model built on the meta device
    (["method=layerprune", "model=resnet20", "method.layers_to_remove=7"],
     "method.layers_to_remove=7: model=resnet20 has 7 removable blocks and one must stay: "
     "at most 6"),
    (["method=layerprune", "model=bert_tiny", "dataset=rotten_tomatoes",
      "method.layers_to_remove=2"], "method.layers_to_remove=2: model=bert_tiny has 2 removable"),
    (["method=layerprune"], "method=layerprune: model=mlp has no removable block"),
    # a derived default in an error says where it comes from; the key named is one typed
    (["trainer.epochs=1", "schedule.ramp_epochs=3"], "schedule.ramp_epochs=3: warm-up 0 (derived "
     "from trainer.epochs=1) + ramp 3 epochs reaches the target at epoch 3"),
    (["trainer.epochs=10", "schedule.warmup_epochs=9"], "schedule.warmup_epochs=9: warm-up 9 + "
     "ramp 5 epochs"),
    (["method=gmp", "schedule.start_epoch=20"], "schedule.start_epoch=20: must be before "
     "schedule.end_epoch=18 (derived from trainer.epochs=30)"),
    (["method=gmp", "schedule.end_epoch=2"], "schedule.end_epoch=2: must be after "
     "schedule.start_epoch=3 (derived from trainer.epochs=30)"),
    (["model=resnet20", "granularity=channel", "schedule=epi", "trainer.epochs=1"],
     "trainer.epochs=1: schedule=epi needs at least 2"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_config_is_one_line_naming_key_and_value(argv, message):
    with pytest.raises(PdpruneError) as err:
        check(argv)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_missing_fashion_mnist_files_are_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(PdpruneError, match="missing train-labels-idx1-ubyte"):
        check(["dataset=fashion_mnist", f"dataset.root={tmp_path}"])


RECIPES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
SWEEP_JOBS = {"pdp_vs_gmp": 2 * 4 * 3,  # methods x sparsities x seeds
              "zhu_gupta_sparse_vs_dense": 2 * 4,  # arms x budgets
              "baselines": 7 * 2 * 3}  # methods x sparsities x seeds


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_passes_the_checks(recipe):
    """A recipe that names a key the schema lacks, or a bad value, fails here and not after a
    user's first hour of training; a sweep recipe has every job checked."""
    assert check(["-m", f"experiment={recipe}"]) == SWEEP_JOBS.get(recipe, 1)


def test_good_sweep_checks_every_job():
    assert check(["-m", "method=pdp,gmp", "sparsity=0.5,0.9", "experiment=smoke"]) == 4


def test_cli_exits_2_with_one_line_and_leaves_no_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdprune", "trainer.epochs=0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prune-train: error: trainer.epochs=0: must be a positive number of epochs"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), [
    # two of the BAD table's kinds, end to end (each is a process start: seconds): a key added
    # with + (past Hydra's closed schema) and a check on the model built on the meta device
    (["+trainer.epoch=3"], "trainer.epoch=3: no such key (did you mean trainer.epochs?)"),
    (["method=layerprune", "model=resnet20", "method.layers_to_remove=9"],
     "method.layers_to_remove=9: model=resnet20 has 7 removable blocks"),
])
def test_cli_refuses_before_any_folder(tmp_path, argv, message):
    proc = subprocess.run([sys.executable, "-m", "pdprune", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prune-train: error: {message}")
    assert list(tmp_path.iterdir()) == []

def test_cuda_without_a_gpu_is_refused_before_any_folder():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(PdpruneError, match=r"^trainer.device=cuda: CUDA is not available here"):
        check(["trainer.device=cuda"])


# ---------------------------------------------------------------- dataset files, read cheaply


def _idx_root(tmp_path, gz=False):
    from .fakedata import write_idx

    write_idx(tmp_path, n_train=12, n_test=10, gz=gz)
    return tmp_path


def _check_mnist(root):
    with pytest.raises(PdpruneError) as err:
        check(["dataset=mnist", f"dataset.root={root}"])
    assert "\n" not in str(err.value)
    return str(err.value)


def test_good_idx_files_pass(tmp_path):
    assert check(["dataset=mnist", f"dataset.root={_idx_root(tmp_path, gz=True)}"]) == 1


def test_truncated_idx_file_is_named(tmp_path):
    path = _idx_root(tmp_path) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    assert _check_mnist(tmp_path) == (f"{path}: cut short (header says shape (12, 28, 28): "
                                      f"{16 + 12 * 28 * 28} bytes; the file holds 1000)")


def test_truncated_gzipped_idx_file_is_named(tmp_path):
    path = _idx_root(tmp_path, gz=True) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:3000])
    assert _check_mnist(tmp_path).startswith(f"{path}: cut short")


def test_images_where_labels_belong_is_named(tmp_path):
    root = _idx_root(tmp_path)
    (root / "t10k-labels-idx1-ubyte").write_bytes((root / "t10k-images-idx3-ubyte").read_bytes())
    assert _check_mnist(tmp_path) == (f"{root / 't10k-labels-idx1-ubyte'}: holds shape "
                                      "(10, 28, 28), expected (10,) labels to match "
                                      "t10k-images-idx3-ubyte")


def test_idx_counts_that_disagree_are_named(tmp_path):
    from .fakedata import idx_bytes

    root = _idx_root(tmp_path)
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11)))
    assert "train-labels-idx1-ubyte: holds shape (11,), expected (12,) labels" in \
        _check_mnist(tmp_path)


def test_idx_wrong_magic_and_label_range_are_named(tmp_path):
    root = _idx_root(tmp_path)
    labels = root / "train-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(good[:2] + b"\x0d" + good[3:])  # float elements: not MNIST
    assert _check_mnist(tmp_path) == f"{labels}: not an unsigned-byte IDX file (bad magic number)"
    labels.write_bytes(good)
    test_labels = root / "t10k-labels-idx1-ubyte"  # classes: the training labels' (10 here)
    test_labels.write_bytes(test_labels.read_bytes()[:-1] + b"\x0a")
    assert _check_mnist(tmp_path) == f"{test_labels}: label 10 out of range for 10 classes"


def test_truncated_cifar_pickle_is_named(tmp_path):
    from .fakedata import write_cifar

    write_cifar(tmp_path, "cifar10", per_batch=2, n_test=2)
    assert check(["dataset=cifar10", f"dataset.root={tmp_path}"]) == 1
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PdpruneError, match=f"^{path}: cut short or not a CIFAR pickle"):
        check(["dataset=cifar10", f"dataset.root={tmp_path}"])


# ---------------------------------------------------------------- derived schedule defaults

# every method with its own schedule, and with the others'
RECIPE_SCHEDULES = {
    "pdp": ["method=pdp"],
    "gmp": ["method=gmp"],
    "magnitude": ["method=magnitude"],
    "pdp+cubic": ["method=pdp", "schedule=cubic"],
    "magnitude+pdp": ["method=magnitude", "schedule=pdp"],
    "layerprune": ["method=layerprune", "model=resnet20"],
    "epi": ["model=resnet20", "granularity=channel", "schedule=epi", "sparsity=0.5"],
}


@pytest.mark.parametrize("epochs", [1, 2, 3])
@pytest.mark.parametrize("recipe", RECIPE_SCHEDULES)
def test_derived_schedules_fit_short_runs(recipe, epochs):
    argv = [*RECIPE_SCHEDULES[recipe], f"trainer.epochs={epochs}"]
    if recipe == "epi" and epochs == 1:  # it prunes after an epoch and trains on: 2 at least
        with pytest.raises(PdpruneError, match=r"^trainer.epochs=1: schedule=epi needs"):
            check(argv)
    else:
        assert check(argv) == 1


def _old_epochs_frac(fraction, epochs):
    """The derived defaults before they were clamped for short runs."""
    return max(1, round(fraction * epochs))


# (schedule key, its old fraction) per schedule; the old value is kept wherever it was valid
DERIVED = {"pdp": [("warmup_epochs", 0.1), ("ramp_epochs", 0.5)],
           "cubic": [("start_epoch", 0.1), ("end_epoch", 0.6)],
           "oneshot": [("epoch", 0.3)], "epi": [("max_epoch", 0.5)]}
CHANGED = {("pdp", 1): (0, 1), ("cubic", 1): (0, 1), ("cubic", 2): (0, 1), ("oneshot", 1): (0,)}


@pytest.mark.parametrize("recipe", [r for r in RECIPE_SCHEDULES if r != "layerprune"])
def test_every_epoch_count_gives_a_valid_schedule_and_keeps_working_values(make_cfg, recipe):
    """For trainer.epochs 1..60 the derived defaults validate, and they equal the plain
    fractions everywhere those were valid (runs that worked before keep their exact values).
    layerprune takes oneshot.yaml as magnitude does (and would build its model 60 times)."""
    from pdprune.config.validate import validate

    cfg = make_cfg(*RECIPE_SCHEDULES[recipe])
    name = cfg.schedule.name
    for epochs in range(2 if name == "epi" else 1, 61):
        cfg.trainer.epochs = epochs  # the interpolations follow
        validate(cfg)
        old = tuple(_old_epochs_frac(f, epochs) for _, f in DERIVED[name])
        expected = CHANGED.get((name, epochs), old)
        assert tuple(cfg.schedule[key] for key, _ in DERIVED[name]) == expected, epochs


# ---------------------------------------------------------------- accepted, with a note


def test_dense_with_a_sparsity_runs_with_a_note(capsys):
    assert check(["method=dense", "sparsity=0.9"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "prune-train: note: method=dense is the dense baseline and ignores sparsity=0.9 (its "
        "summary says target 0)"]
    assert check(["method=dense"]) == 1  # sparsity not typed: nothing to say
    assert check(["+arm=small_dense", "sparsity=0.5"]) == 1  # sized by it: not ignored
    assert check(["-m", "method=dense,pdp", "sparsity=0.9"]) == 2  # a sweep: expected
    assert capsys.readouterr().err == ""
