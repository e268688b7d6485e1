"""Checkpoints and weights files load without running anything from them, a bad one is one
line naming it (before any run folder exists where that can be checked), and a layer-pruned
run's weights load back into the shallower network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from pdprune.config.preflight import check
from pdprune.errors import ConfigError, PdpruneError
from pdprune.models import build_model
from pdprune.run import run
from pdprune.train import loop
from pdprune.train.checkpoint import CHECKPOINT, PAYLOAD, check_same_run, load_checkpoint

from .conftest import TINY

FAST = (*TINY, "trainer.threads=1")


class Poison:
    """Unpickling this creates a file: what a hostile last.pt could do with a shell command."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text, text
    return text


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch tiny run: its folder holds checkpoints/last.pt and
    model.safetensors."""
    from hydra import compose, initialize_config_dir

    from pdprune.config import CONFIG_DIR

    folder = tmp_path_factory.mktemp("finished")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, "trainer.epochs=3"])
    run(cfg, folder)
    return folder


# ---------------------------------------------------------------- 1: weights_only payloads

PLAIN = (torch.Tensor, str, int, float, bool, type(None))


def plain_only(tree, where: str = "payload") -> None:
    """Tensors and plain values in dicts, lists and tuples: what weights_only=True accepts
    without any registered global."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            assert isinstance(key, str | int), f"{where}: key {key!r}"
            plain_only(value, f"{where}.{key}")
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            plain_only(value, f"{where}[{i}]")
    else:
        assert isinstance(tree, PLAIN), f"{where}: {type(tree).__name__}"


KINDS = {
    "pdp": ["method=pdp"],
    "gmp": ["method=gmp"],
    "channel": ["method=pdp", "granularity=channel", "sparsity=0.5"],
    "layerprune": ["model=resnet20", "model.width=0.25", "method=layerprune",
                   "method.layers_to_remove=2", "schedule.epoch=1", "export.latency_repeats=1",
                   "export.latency_warmup=0", "export.latency_compiled=false"],
    "epi": ["model=resnet20", "model.width=0.25", "granularity=channel", "schedule=epi",
            "sparsity=0.25", "schedule.tau=0.5", "schedule.max_epoch=2"],
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_checkpoint_holds_only_tensors_and_plain_values(make_cfg, tmp_path, kind):
    overrides = [*FAST, "trainer.epochs=3", *KINDS[kind]]
    if kind in ("layerprune", "epi"):
        overrides.remove("model.hidden=[32]")
    run(make_cfg(*overrides), tmp_path)
    path = tmp_path / CHECKPOINT
    plain_only(torch.load(path, map_location="cpu", weights_only=True))
    assert set(PAYLOAD) <= load_checkpoint(path).keys()


# ---------------------------------------------------------------- 2: bad checkpoints


def bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """Each kind of damage, written as a checkpoint file of its own."""
    data = good.read_bytes()
    made = {"random bytes": os.urandom(4096), "truncated": data[:len(data) // 2], "empty": b""}
    paths = {}
    for name, content in made.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.pt"
        paths[name].write_bytes(content)
    paths["no config"] = folder / "no_config.pt"
    payload = torch.load(good, weights_only=True)
    del payload["config"], payload["optimizer"]
    torch.save(payload, paths["no config"])
    paths["a list"] = folder / "list.pt"
    torch.save([torch.zeros(2)], paths["a list"])
    return paths


def test_a_damaged_checkpoint_is_one_line_naming_the_file(finished, tmp_path):
    expected = {"random bytes": "not a file torch.save wrote", "truncated": "damaged or truncated",
                "empty": "empty or truncated", "no config": "no optimizer, config",
                "a list": "holds a list"}
    for name, path in bad_files(tmp_path, finished / CHECKPOINT).items():
        with pytest.raises(PdpruneError) as err:
            load_checkpoint(path)
        text = one_line(err)
        assert text.startswith(f"checkpoint {path}: ") and expected[name] in text, text


def test_any_random_bytes_are_not_a_torch_save_file(tmp_path):
    """Random bytes trip the unpickler on whatever opcode comes first (an empty stack, a bad
    index...): the message must not depend on which."""
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "random.pt"
    for _ in range(200):
        path.write_bytes(torch.randint(0, 256, (512,), generator=gen, dtype=torch.uint8)
                         .numpy().tobytes())
        with pytest.raises(PdpruneError) as err:
            load_checkpoint(path)
        assert "not a file torch.save wrote" in one_line(err)


def poisoned(folder: Path, target: Path, legacy: bool = False) -> Path:
    """folder/checkpoints/last.pt whose unpickling would create `target`."""
    path = folder / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:  # a plain pickle, not torch.save's zip
        import pickle
        path.write_bytes(pickle.dumps({"config": Poison(target)}))
    else:
        torch.save({"config": Poison(target), "model": {}}, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_a_poisoned_checkpoint_runs_nothing(tmp_path, legacy):
    target = tmp_path / "created_by_the_pickle"
    path = poisoned(tmp_path / "run", target, legacy)
    with pytest.raises(PdpruneError) as err:
        load_checkpoint(path)
    assert not target.exists()
    text = one_line(err)
    assert text.startswith(f"checkpoint {path}: ")
    if not legacy:
        assert "pickled object" in text and "nothing in it ran" in text


def test_resume_preflight_and_run_refuse_a_poisoned_checkpoint(make_cfg, finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    target = tmp_path / "created_by_the_pickle"
    path = poisoned(folder, target)
    with pytest.raises(PdpruneError) as err:  # the preflight: before Hydra makes anything
        check([*FAST, "trainer.epochs=3", f"trainer.resume={folder}"])
    assert one_line(err).startswith(f"checkpoint {path}: ")
    with pytest.raises(PdpruneError) as err:  # the run itself (library use)
        run(make_cfg(*FAST, "trainer.epochs=3", f"trainer.resume={folder}"), folder)
    assert one_line(err).startswith(f"checkpoint {path}: ")
    assert not target.exists()


def test_a_checkpoint_that_does_not_fit_the_run_is_one_line(make_cfg, finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    payload = torch.load(folder / CHECKPOINT, weights_only=True)
    payload["model"]["fc1.weight"] = torch.zeros(3, 3)  # loads, but not into this model
    torch.save(payload, folder / CHECKPOINT)
    with pytest.raises(PdpruneError) as err:
        run(make_cfg(*FAST, "trainer.epochs=3", f"trainer.resume={folder}"), folder)
    text = one_line(err)
    assert text.startswith(f"checkpoint {folder / CHECKPOINT}: does not fit this run")
    assert "fc1.weight" in text


@pytest.mark.slow
def test_cli_resume_of_a_poisoned_run_leaves_no_file_and_prints_one_line(finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    (folder / ".hydra").mkdir()  # what prune-train leaves: with_resume replays the overrides
    (folder / ".hydra" / "overrides.yaml").write_text(json.dumps([*FAST, "trainer.epochs=3"]))
    target = tmp_path / "created_by_the_pickle"
    poisoned(folder, target)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "pdprune", f"trainer.resume={folder}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nothing in it ran" in proc.stderr, proc.stderr
    assert not target.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- 3: a stale last.tmp


class Killed(Exception):
    pass


def test_resume_removes_a_stale_temporary_checkpoint(make_cfg, tmp_path, monkeypatch):
    overrides = [*FAST, "trainer.epochs=3"]
    save = loop.Trainer.save_checkpoint

    def save_then_die(self):
        save(self)
        if self.state.epoch == 1:
            raise Killed

    monkeypatch.setattr(loop.Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run(make_cfg(*overrides), tmp_path)
    monkeypatch.undo()
    stale = (tmp_path / CHECKPOINT).with_suffix(".tmp")
    stale.write_bytes(b"half a checkpoint")  # the process died inside the next write
    seen = []  # whether it is still there when training would go on (a write replaces it)
    fit = loop.Trainer.fit
    monkeypatch.setattr(loop.Trainer, "fit", lambda self: seen.append(stale.exists()) or fit(self))
    run(make_cfg(*overrides, f"trainer.resume={tmp_path}"), tmp_path)
    assert seen == [False]


# ---------------------------------------------------------------- 4: the group, not a key


def test_another_model_group_is_named_as_the_group():
    saved = {"model": {"name": "lenet", "width": 1.0}, "seed": 0}
    now = {"model": {"name": "mlp", "hidden": [32], "width": 1.0}, "seed": 0}
    with pytest.raises(ConfigError) as err:
        check_same_run(saved, now)
    assert str(err.value).startswith("model=mlp: differs from the run being resumed (lenet)")
    # same group: the key inside it
    with pytest.raises(ConfigError, match=r"^model.width=2.0: differs"):
        check_same_run(saved, {"model": {"name": "lenet", "width": 2.0}, "seed": 0})
    # a shallower key that differs is still named first
    with pytest.raises(ConfigError, match=r"^seed=1: differs"):
        check_same_run(saved, {**now, "seed": 1})


def test_resuming_a_lenet_run_with_model_mlp_names_model(make_cfg, tmp_path):
    lenet = [o for o in FAST if not o.startswith("model.")] + ["model=lenet"]
    saved = OmegaConf.to_container(make_cfg(*lenet), resolve=True)
    torch.save({key: {} for key in PAYLOAD} | {"config": saved}, tmp_path / "last.pt")
    with pytest.raises(ConfigError) as err:
        check([*FAST, f"trainer.resume={tmp_path / 'last.pt'}"])  # TINY's model: mlp
    assert one_line(err).startswith("model=mlp: differs from the run being resumed (lenet)")


# ---------------------------------------------------------------- 5: model.checkpoint


def mlp_state(hidden: int) -> dict[str, torch.Tensor]:
    """The state_dict of TINY's MLP (synthetic 1x8x8, 4 classes) with `hidden` units."""
    cfg = OmegaConf.create({"name": "mlp", "hidden": [hidden], "width": 1.0})
    return build_model(cfg, (1, 8, 8), 4).state_dict()


def test_model_checkpoint_that_fits_passes_the_preflight(tmp_path):
    save_file(mlp_state(32), str(tmp_path / "w.safetensors"))
    torch.save(mlp_state(32), tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        assert check([*FAST, f"model.checkpoint={tmp_path / name}"]) == 1
    head = mlp_state(32)  # another class count: the classifier is skipped, the rest loads
    head["classifier.weight"], head["classifier.bias"] = torch.zeros(10, 32), torch.zeros(10)
    torch.save(head, tmp_path / "head.pt")
    assert check([*FAST, f"model.checkpoint={tmp_path / 'head.pt'}"]) == 1


def test_a_bad_model_checkpoint_is_one_line_before_any_folder(tmp_path):
    target = tmp_path / "created_by_the_pickle"
    files = {
        "random.pt": ("bytes", "not a file torch.save wrote"),
        "random.safetensors": ("bytes", "cannot read it"),
        "poison.pt": ("poison", "nothing in it ran"),
        "wide.pt": (mlp_state(64), "none of the model's 2 weight tensors has its shape"),
        "lenet.pt": ("lenet", "of the model's keys are not in it"),
    }
    for name, (content, expected) in files.items():
        path = tmp_path / name
        if content == "bytes":
            path.write_bytes(os.urandom(2048))
        elif content == "poison":
            torch.save({"fc1.weight": Poison(target)}, path)
        elif content == "lenet":
            cfg = OmegaConf.create({"name": "lenet", "width": 1.0})
            torch.save(build_model(cfg, (1, 8, 8), 4).state_dict(), path)
        else:
            torch.save(content, path)
        with pytest.raises(PdpruneError) as err:
            check([*FAST, f"model.checkpoint={path}"])
        text = one_line(err)
        assert text.startswith(f"model.checkpoint={path}: ") and expected in text, text
    assert not target.exists()


@pytest.mark.slow
def test_cli_bad_model_checkpoint_makes_no_folder(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(2048))
    proc = subprocess.run([sys.executable, "-m", "pdprune", *FAST, f"model.checkpoint={path}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 6: layer-pruned weights

RESNET = ["dataset=synthetic", "trainer.progress=false", "trainer.threads=1", "trainer.epochs=2",
          "model=resnet20", "model.width=0.25"]
LAYERPRUNE = [*RESNET, *KINDS["layerprune"]]


@pytest.fixture(scope="module")
def layer_pruned(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from pdprune.config import CONFIG_DIR

    folder = tmp_path_factory.mktemp("layerprune")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        run(compose("train", overrides=LAYERPRUNE), folder)
    return folder


def test_a_layer_pruned_run_loads_back_into_the_shallower_network(layer_pruned, make_cfg):
    removed = json.loads((layer_pruned / "summary.json").read_text())["blocks"]["removed"]
    assert len(removed) == 2
    saved = load_file(str(layer_pruned / "model.safetensors"))
    for given in (layer_pruned, layer_pruned / "model.safetensors"):
        overrides = [*RESNET, "method=pdp", f"model.checkpoint={given}"]
        assert check(overrides) == 1  # the preflight builds it on the meta device
        cfg = make_cfg(*overrides)
        model = build_model(cfg.model, (1, 8, 8), 4)
        state = model.state_dict()
        assert state.keys() == saved.keys()
        assert all(torch.equal(state[k], saved[k]) for k in saved)
        for name in removed:
            assert isinstance(model.get_submodule(name), torch.nn.Identity)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def test_layer_pruned_weights_without_their_run_are_one_line(layer_pruned, tmp_path):
    alone = tmp_path / "model.safetensors"  # copied away from its summary.json
    shutil.copy(layer_pruned / "model.safetensors", alone)
    with pytest.raises(PdpruneError) as err:
        check([*RESNET, f"model.checkpoint={alone}"])
    assert "a layer-pruned run's weights load from its run folder" in one_line(err)
    other = tmp_path / "run"  # its summary names blocks that another depth does not have
    other.mkdir()
    for name in ("model.safetensors", "summary.json"):
        shutil.copy(layer_pruned / name, other / name)
    with pytest.raises(PdpruneError) as err:
        check([*RESNET, "model=resnet56", f"model.checkpoint={other}"])
    one_line(err)


class ShellCommand:
    """Unpickled without weights_only, this would run a shell command (os.system): torch names
    such a blocked module in a message of its own."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_checkpoint_that_pickles_a_shell_command_runs_nothing(tmp_path):
    target = tmp_path / "created_by_the_shell"
    path = tmp_path / "run" / CHECKPOINT
    path.parent.mkdir(parents=True)
    torch.save({"config": ShellCommand(f"touch {target}")}, path)
    with pytest.raises(PdpruneError) as err:
        load_checkpoint(path)
    assert not target.exists()
    text = one_line(err)
    assert text.startswith(f"checkpoint {path}: it holds a pickled object (")
    assert "nothing in it ran" in text and "weights_only" not in text
