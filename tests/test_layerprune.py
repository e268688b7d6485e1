"""LayerPrune (docs/methods.md#layerprune): block scores, one-shot removal, a shallower export."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pdprune.errors import ConfigError
from pdprune.models import build_model
from pdprune.models.blocks import count_blocks, find_blocks, remove_blocks
from pdprune.pruning.importance import ImportanceMeter, accumulate, static_scores
from pdprune.pruning.structures.removable_blocks import block_scores, scored_modules
from pdprune.run import run

SHAPE = (1, 8, 8)


def resnet20(make_cfg):
    torch.manual_seed(0)
    return build_model(make_cfg("model=resnet20").model, SHAPE, 4)


def plant_weak_block(model, name: str) -> None:
    """Make one block's filters (and BN scales) a hundred times weaker than the rest."""
    with torch.no_grad():
        for module in model.get_submodule(name).modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.BatchNorm2d):
                module.weight.mul_(0.01)


def test_removable_blocks_of_a_cifar_resnet(make_cfg):
    model = resnet20(make_cfg)
    # the first block of layer2 and layer3 changes shape (projection shortcut): not removable
    assert [b.name for b in find_blocks(model)] == [
        "layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    assert count_blocks(model) == 9


def test_weight_criteria_by_hand():
    conv = torch.nn.Conv2d(1, 2, (1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[3.0, -4.0]]], [[[0.0, 1.0]]]]))
    assert static_scores(conv, "l1").tolist() == pytest.approx([3.5, 0.5])  # mean |w|
    assert static_scores(conv, "l2").tolist() == pytest.approx([(12.5) ** 0.5, 0.5 ** 0.5])
    conv.weight.grad = torch.tensor([[[[1.0, 0.5]]], [[[2.0, 2.0]]]])
    meter = ImportanceMeter({"c": conv}, "taylor")
    meter.update()
    assert meter.scores()["c"].tolist() == pytest.approx([(9 + 4) / 2, (0 + 4) / 2])


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_gamma", "taylor", "bn_taylor"])
def test_the_planted_weak_block_scores_lowest(make_cfg, criterion):
    model = resnet20(make_cfg)
    plant_weak_block(model, "layer2.1")
    blocks = find_blocks(model)
    meter = ImportanceMeter(scored_modules(model, blocks, criterion), criterion)
    if meter.needs_gradients:
        gen = torch.Generator().manual_seed(0)
        batches = [(torch.randn(16, *SHAPE, generator=gen), torch.randint(4, (16,), generator=gen))
                   for _ in range(3)]
        before = {k: v.clone() for k, v in model.state_dict().items()}
        accumulate(meter, model, batches, torch.device("cpu"))
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # the pass changes nothing
        assert meter.batches == 3
    scores = block_scores(model, blocks, meter.scores())
    assert min(scores, key=scores.get) == "layer2.1"


def test_removed_blocks_leave_their_shortcut(make_cfg):
    model = resnet20(make_cfg).eval()
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():  # a block whose residual branch outputs zero is the identity already
        model.layer3[1].bn2.weight.zero_()
        model.layer3[1].bn2.bias.zero_()
        before = model(x)
        remove_blocks(model, ["layer3.1"])
        assert torch.allclose(model(x), before, atol=1e-6)
    assert count_blocks(model) == 8
    with pytest.raises(ValueError, match="not removable"):
        remove_blocks(model, ["layer2.0"])


def test_mobilenet_v2_and_bert_blocks(make_cfg):
    mobilenet = build_model(make_cfg("model=mobilenet_v2").model, (3, 16, 16), 4)
    names = [b.name for b in find_blocks(mobilenet)]
    assert len(names) == 10  # inverted residuals with a residual connection
    remove_blocks(mobilenet, names[:3])
    assert mobilenet.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 4)

    bert = build_model(make_cfg("model=bert_tiny", "dataset=rotten_tomatoes").model, (16,), 2)
    layers = find_blocks(bert)
    assert [b.kind for b in layers] == ["encoder_layer"] * 2
    remove_blocks(bert, [layers[0].name])
    assert bert.hf.config.num_hidden_layers == 1 and count_blocks(bert) == 1
    assert bert.eval()(torch.randint(5, 100, (2, 16))).shape == (2, 2)


LAYER_RUN = ("dataset=synthetic", "model=resnet20", "method=layerprune",
             "trainer.epochs=3", "trainer.progress=false", "export.latency_repeats=5",
             "export.latency_compiled=false")


def test_layerprune_run_exports_a_shallower_model(make_cfg, tmp_path):
    summary = run(make_cfg(*LAYER_RUN, "method.layers_to_remove=3", "schedule.epoch=1"),
                  tmp_path)
    blocks = summary["blocks"]
    assert (blocks["blocks_before"], blocks["blocks_after"], len(blocks["removed"])) == (9, 6, 3)
    assert summary["achieved_sparsity"] == pytest.approx(3 / 7)
    program = summary["export"]["program"]
    # resnet20 (option-B shortcuts): 19 convs + 2 projections + fc = 22; 2 convs per block gone
    assert program["weight_layers"] == 22 - 2 * 3
    assert program["max_abs_diff_vs_model"] <= 1e-5
    assert summary["latency"]["cpu"]["1"]["exported"]["median_ms"] > 0
    code = ("import sys, torch\n"
            "m = torch.export.load(sys.argv[1] + '/model.pt2').module()\n"
            "assert 'pdprune' not in sys.modules\n"
            "assert m(torch.randn(3, 1, 8, 8)).shape == (3, 4)\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)


def test_latency_budget_removes_blocks_until_it_holds(make_cfg, tmp_path):
    summary = run(make_cfg(*LAYER_RUN, "method.latency_budget=0.9", "method.criterion=l1",
                           "schedule.epoch=0", "method.latency_batch=8"), tmp_path)
    trace = summary["blocks"]["latency_trace"]
    assert [t["removed"] for t in trace] == list(range(1, len(trace) + 1))
    assert len(summary["blocks"]["removed"]) == len(trace)
    assert trace[-1]["ratio"] <= 0.9 or len(trace) == 6  # met, or all but one block gone
    assert all(t["ratio"] > 0.9 for t in trace[:-1])


def test_layerprune_config_errors(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="method.layers_to_remove"):
        run(make_cfg(*LAYER_RUN, "method.layers_to_remove=7"), tmp_path)
    with pytest.raises(ConfigError, match="granularity"):
        run(make_cfg(*LAYER_RUN, "granularity=channel"), tmp_path)
    with pytest.raises(ConfigError, match="method.criterion"):
        run(make_cfg(*LAYER_RUN, "method.criterion=l3"), tmp_path)


def test_vgg_conv_removal_reshapes_the_next_conv(make_cfg):
    vgg = build_model(make_cfg("model=vgg11_bn").model, (1, 8, 8), 4)
    blocks = find_blocks(vgg)
    assert [b.kind for b in blocks] == ["chain_conv"] * 7  # 8 convs, the last one stays
    assert count_blocks(vgg) == 8
    # conv 8 (256 <- 128) goes; conv 11 (256 <- 256) is re-shaped to take conv 8's 128 inputs
    kept = vgg.features[11].weight[:, :128].detach().clone()
    optimizer = torch.optim.SGD(vgg.parameters(), lr=0.1, momentum=0.9)
    reshaped = remove_blocks(vgg, ["features.8"])
    conv = vgg.features[11]
    assert reshaped == [conv.weight] and conv.weight.shape == (256, 128, 3, 3)
    assert isinstance(vgg.features[8], torch.nn.Identity) and count_blocks(vgg) == 7
    assert any(conv.weight is p for p in optimizer.param_groups[0]["params"])  # still trained
    assert torch.equal(conv.weight.detach(), kept)
    assert vgg.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    scores = block_scores(vgg, find_blocks(vgg),
                          ImportanceMeter(scored_modules(vgg, find_blocks(vgg), "bn_gamma"),
                                          "bn_gamma").scores())
    assert "features.8" not in scores and len(scores) == 6


@pytest.mark.slow
def test_bert_layerprune_run_drops_an_encoder_layer(make_cfg, tmp_path):
    summary = run(make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", "method=layerprune",
                           "method.layers_to_remove=1", "experiment=smoke",
                           "trainer.max_train_batches=5", "trainer.progress=false"), tmp_path)
    assert (summary["blocks"]["blocks_before"], summary["blocks"]["blocks_after"]) == (2, 1)
    # 2 layers x 6 linears + pooler + classifier = 14; one layer's 6 linears gone (+ embeddings)
    program = summary["export"]["program"]
    assert program["max_abs_diff_vs_model"] <= 1e-5
    assert program["weight_layers"] == 14 - 6 + 3  # the 3 embedding tables are 2-D weights too
