"""Every model trains, prunes and exports on tiny CIFAR-10 and ImageFolder trees written in the
real on-disk formats, through the same code path as prune-train."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdprune.config import CONFIG_DIR
from pdprune.models.text_names import TEXT_MODELS
from pdprune.run import run

from .fakedata import write_cifar, write_imagefolder

pytestmark = pytest.mark.slow
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")
                if p.stem != "mlp" and p.stem not in TEXT_MODELS  # text: tests/test_text.py
                and p.stem not in ("custom", "torchvision", "timm"))  # test_custom_models.py
COMMON = ("method=pdp", "sparsity=0.5", "trainer.epochs=2", "schedule.warmup_epochs=1",
          "schedule.ramp_epochs=1", "trainer.progress=false", "export.safetensors=false")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    write_cifar(root / "cifar", "cifar10", per_batch=8, n_test=8)
    write_imagefolder(root / "inet", classes=("ant", "bee"), n_train=6, n_val=2, size=(72, 72))
    return {"cifar10": root / "cifar", "imagenet": root / "inet"}


def check(summary: dict) -> None:
    # to the element, up to ties: 11M float32 magnitudes often repeat a value at the cut
    budget = summary["sparsity_check"]
    assert abs(budget["pruned"] - budget["expected_pruned"]) <= budget["ties"]
    assert budget["expected_pruned"] == round(0.5 * summary["prunable_params"])
    assert summary["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert 0 <= summary["accuracy"]["test"]["top1"] <= 1


# resnet34 is resnet18's builder (BasicBlocks) with more blocks: its CIFAR run added 20 s and
# nothing resnet18's does not cover
@pytest.mark.parametrize("model", [m for m in MODELS if m != "resnet34"])
def test_every_model_on_tiny_cifar10(make_cfg, trees, tmp_path, model):
    cfg = make_cfg(f"model={model}", "dataset=cifar10", f"dataset.root={trees['cifar10']}",
                   "dataset.val_size=8", "dataset.batch_size=8", *COMMON)
    check(run(cfg, tmp_path))


# ImageNet-sized inputs take the torchvision builders' other path (stem, pooling); a deeper
# member of a family on it adds nothing that its CIFAR run and resnet18 / vgg11_bn here miss
IMAGENET_MODELS = [m for m in MODELS if m not in ("resnet34", "resnet50", "vgg16_bn",
                                                   "vit_small")]  # vit_tiny: the same builder


@pytest.mark.parametrize("model", IMAGENET_MODELS)
def test_every_model_on_tiny_imagefolder(make_cfg, trees, tmp_path, model):
    # 64 px crops take the torchvision models' ImageNet path, except VGG, whose ImageNet head
    # (25088 x 4096 x 4096) would make this test a minute long: it keeps the small head
    extra = ["model.small_input=true"] if model.startswith("vgg") else []
    cfg = make_cfg(f"model={model}", "dataset=imagenet", f"dataset.root={trees['imagenet']}",
                   "dataset.image_size=64", "dataset.resize_size=72", "dataset.num_workers=0",
                   "dataset.batch_size=4", "dataset.val_fraction=0.2", *COMMON, *extra)
    check(run(cfg, tmp_path))
