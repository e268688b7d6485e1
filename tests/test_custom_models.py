"""The user's own model (model=custom model._target_=...) and the model libraries
(model=torchvision / model=timm model.arch=...), as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra.errors import HydraException
from torch import nn

from pdprune.errors import ConfigError, PdpruneError
from pdprune.models import build_model, build_on_meta
from pdprune.models.custom import data_arguments
from pdprune.models.libraries import with_in_channels

REPO = Path(__file__).resolve().parents[1]
HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm is an optional extra")

# What a user writes: a small CNN (conv-BN-ReLU, a residual add, BN, a linear head)
MY_MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, num_classes, in_channels=1, width=16):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(width), nn.ReLU())
            self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            x = self.stem(x)
            y = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(x + self.bn2(self.conv2(y)))
            return self.head(x.mean((2, 3)))


    def mlp(num_classes, input_shape, hidden, act):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1]
                                                     * input_shape[2], hidden), act,
                             nn.Linear(hidden, num_classes))


    def sizes(num_classes, widths):
        model = nn.Linear(2, num_classes)
        model.widths = widths
        return model
''')
TINY = ("dataset=synthetic", "trainer.epochs=2", "trainer.progress=false")


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A folder holding my_models.py, importable as from prune-train's working folder."""
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_models", None)


def prune_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "pdprune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def only_summary(folder: Path) -> dict:
    (path,) = folder.rglob("summary.json")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- model=custom, end to end


@pytest.mark.slow
@pytest.mark.parametrize(("args", "unit"), [
    (("method=pdp", "sparsity=0.8"), "weights"),
    (("method=gmp", "granularity=channel", "sparsity=0.5", "export.compact=true"), "channels"),
], ids=["pdp", "gmp-channel-compact"])
def test_users_model_runs_from_its_folder_to_the_target(tmp_path, args, unit):
    (tmp_path / "my_models.py").write_text(MY_MODELS)
    proc = prune_train(tmp_path, "model=custom", "model._target_=my_models.Net", *args, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = only_summary(tmp_path / "runs")
    target = summary["target_sparsity"]
    check = summary["sparsity_check"]
    assert summary["model"] == "custom" and summary["sparsity_unit"] == unit
    assert check["pruned"] == check["expected_pruned"]  # to the element
    assert check["expected_pruned"] == round(target * summary["prunable_params"])
    if unit == "channels":  # 16 channels a group: 8 kept of the two groups (stem+conv2, conv1)
        assert check["channels"] == {"target_pruned": 16, "pruned": 16, "total": 32,
                                     "round_to": 8}
        compact = summary["export"]["compact"]
        assert compact["max_abs_diff_vs_masked"] < 1e-9  # fp64: the same function
        # the head keeps its 16 inputs only where they were not pruned: fewer parameters
        assert compact["params"] < summary["params"]


def test_a_target_that_does_not_import_is_one_line_and_no_folder(tmp_path):
    proc = prune_train(tmp_path, "model=custom", "model._target_=nope.Net", *TINY)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["prune-train: error: model._target_=nope.Net: no module named nope (in the "
                     f"current folder {tmp_path} or the installed packages)"]
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- model=custom, in process


def test_callable_gets_data_sizes_it_names_and_its_own_keys(make_cfg, user_folder):
    cfg = make_cfg("model=custom", "model._target_=my_models.Net", "model.width=12")
    model = build_model(cfg.model, (3, 8, 8), 5)
    assert model.stem[0].in_channels == 3 and model.stem[0].out_channels == 12
    assert model.head.out_features == 5
    # a function, an input_shape, and an argument that is itself instantiated (_target_)
    cfg = make_cfg("model=custom", "model._target_=my_models.mlp", "model.hidden=7",
                   "model.act={_target_: torch.nn.Tanh}")
    model = build_model(cfg.model, (1, 4, 4), 3)
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [7, 3]
    assert isinstance(model[2], nn.Tanh) and model[1].in_features == 16
    cfg = make_cfg("model=custom", "model._target_=my_models.sizes", "model.widths=[4,6]")
    widths = build_model(cfg.model, (1, 4, 4), 3).widths
    assert type(widths) is list and widths == [4, 6]  # as Python passes it: no ListConfig


def test_data_arguments_follow_the_signature():
    def named(num_classes, in_channels, input_shape): ...
    def kwargs(**rest): ...
    def neither(depth=2): ...

    assert data_arguments(named, (3, 8, 8), 4) == {"num_classes": 4, "in_channels": 3,
                                                   "input_shape": (3, 8, 8)}
    assert data_arguments(kwargs, (3, 8, 8), 4) == {"num_classes": 4}  # only the class count
    assert data_arguments(neither, (3, 8, 8), 4) == {}


@pytest.mark.parametrize(("overrides", "message"), [
    (["model._target_=my_models.Nope"], "model._target_=my_models.Nope: my_models has no Nope"),
    (["model._target_=Net"], "model._target_=Net: needs module.name, e.g. my_models.Net"),
    ([], "model._target_: model=custom needs the import path"),
    (["model._target_=my_models.Net", "model.depth=3"],
     "model._target_=my_models.Net: building it failed: TypeError: Net.__init__() got an "
     "unexpected keyword argument 'depth'"),
    (["model._target_=my_models.Net", "model.num_classes=3"],
     "model.num_classes=3: comes from the dataset; leave it out"),
    (["model._target_=torch.nn.Identity"],
     "model._target_=torch.nn.Identity: gives (2, 1, 8, 8) for a batch of 2, not (2, 4) logits"),
])
def test_bad_custom_models_fail_in_the_startup_checks(user_folder, overrides, message):
    from pdprune.config.preflight import check

    with pytest.raises(PdpruneError) as info:
        check(["model=custom", *overrides, "dataset=synthetic"])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_extra_keys_are_open_only_for_the_callables_models(make_cfg):
    from pdprune.config.validate import validate

    validate(make_cfg("model=custom", "model._target_=a.B", "model.depth=3"))
    with pytest.raises(HydraException, match="model.depth"):  # a closed schema: a typo
        make_cfg("model=resnet20", "model.depth=3")
    with pytest.raises(HydraException, match="match_nonzeros"):  # ours keep their types
        make_cfg("model=custom", "model.match_nonzeros=[1]")


def test_custom_model_builds_on_the_meta_device(make_cfg, user_folder):
    cfg = make_cfg("model=custom", "model._target_=my_models.Net")
    model = build_on_meta(cfg.model, (1, 8, 8), 4)
    assert all(p.is_meta for p in model.parameters())


# ---------------------------------------------------------------- model=torchvision / timm


def test_torchvision_model_adapts_channels_and_classes(make_cfg):
    cfg = make_cfg("model=torchvision", "model.arch=efficientnet_b0")
    model = build_model(cfg.model, (1, 16, 16), 7)
    assert model.features[0][0].in_channels == 1  # the stem, same name as torchvision's
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 16, 16)).shape == (2, 7)


def test_with_in_channels_keeps_the_stem_alike():
    from torchvision.models import resnet18

    model = with_in_channels(resnet18(num_classes=3), 2)
    assert (model.conv1.in_channels, model.conv1.out_channels) == (2, 64)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)


def test_library_checkpoint_loads_local_weights(make_cfg, tmp_path):
    cfg = make_cfg("model=torchvision", "model.arch=squeezenet1_1")
    saved = build_model(cfg.model, (3, 16, 16), 4)
    torch.save(saved.state_dict(), tmp_path / "w.pt")
    cfg.model.checkpoint = str(tmp_path / "w.pt")
    loaded = build_model(cfg.model, (3, 16, 16), 4)
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=torchvision", "model.arch=efficientnet_b9"],
     "model.arch=efficientnet_b9: no such torchvision classification model (close: "
     "efficientnet_b7"),
    (["model=torchvision"], "model.arch: model=torchvision needs the library's model name"),
    (["model=torchvision", "model.arch=vit_b_16"],
     "model.arch=vit_b_16: does not run on inputs of shape (1, 8, 8): AssertionError: Wrong "
     "image height!"),
])
def test_bad_library_models_fail_in_the_startup_checks(overrides, message):
    from pdprune.config.preflight import check

    with pytest.raises(PdpruneError) as info:
        check([*overrides, "dataset=synthetic"])
    assert str(info.value).startswith(message)


def test_timm_missing_is_one_line_with_the_install_hint(make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    cfg = make_cfg("model=timm", "model.arch=resnet18")
    with pytest.raises(PdpruneError, match=r"^model=timm needs timm: pip install "
                                           r"'pdprune\[timm\]'$"):
        build_model(cfg.model, (3, 8, 8), 4)


@needs_timm
def test_timm_model_adapts_and_names_close_archs(make_cfg):
    cfg = make_cfg("model=timm", "model.arch=resnet18")
    model = build_model(cfg.model, (1, 8, 8), 3)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 3
    cfg.model.arch = "resnet_18"
    with pytest.raises(ConfigError, match=r"no such timm .*close: resnet18"):
        build_model(cfg.model, (1, 8, 8), 3)


@pytest.mark.slow
@pytest.mark.parametrize("library", [
    "torchvision", pytest.param("timm", marks=needs_timm)])
def test_library_models_run_under_smoke(make_cfg, tmp_path, library):
    from pdprune.run import run

    arch = {"torchvision": "efficientnet_b0", "timm": "resnet18"}[library]
    # the smoke recipe cut to one epoch of one batch, pruned at its start: these are 4M and
    # 11M parameter models (PDP over every step of the whole recipe takes minutes on 2 cores)
    cfg = make_cfg("experiment=smoke", f"model={library}", f"model.arch={arch}",
                   "method=magnitude", "schedule=oneshot", "trainer.epochs=1",
                   "trainer.max_train_batches=1", "dataset.batch_size=8",
                   "trainer.progress=false", "export.safetensors=false")
    summary = run(cfg, tmp_path)
    check = summary["sparsity_check"]
    assert summary["model"] == library and summary["input_shape"] == [1, 8, 8]
    # to the element, up to ties: millions of float32 magnitudes repeat values at the cut
    assert abs(check["pruned"] - check["expected_pruned"]) <= check["ties"]
    assert check["expected_pruned"] == round(0.9 * summary["prunable_params"])
