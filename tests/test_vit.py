"""Vision Transformers (models/vit.py) and granularity=channel on transformers: whole attention
heads and FFN neurons (pruning/structures/heads.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pdprune.errors import ConfigError
from pdprune.export.compact import TOLERANCE, compact_model
from pdprune.models import build_model
from pdprune.models.vit import Attention, Mlp
from pdprune.pruning import build_pruner
from pdprune.run import run

from .test_pruner import train_steps

SHAPE = (1, 8, 8)
VIT = ("model=vit_tiny", "model.depth=2", "dataset=synthetic", "trainer.progress=false",
       "export.safetensors=false")
CHANNEL = ("granularity=channel", "method=magnitude", "sparsity=0.5")


def vit_cfg(make_cfg, *overrides):
    return make_cfg(*VIT, *overrides)


@pytest.mark.parametrize(("name", "shape", "patch", "tokens"),
                         [("vit_tiny", (1, 8, 8), 2, 17), ("vit_tiny", (3, 32, 32), 4, 65),
                          ("vit_small", (1, 28, 28), 4, 50), ("vit_tiny", (3, 64, 64), 8, 65)])
def test_vit_sizes_and_automatic_patches(make_cfg, name, shape, patch, tokens):
    model = build_model(make_cfg(f"model={name}", "model.depth=1").model, shape, 10)
    dim, heads = {"vit_tiny": (192, 3), "vit_small": (384, 6)}[name]
    assert model.patch_embed.kernel_size == (patch, patch)
    assert model.pos_embed.shape == (1, tokens, dim)
    assert model.blocks[0].attn.num_heads == heads
    assert model.blocks[0].mlp.fc1.out_features == 4 * dim
    assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize(("override", "key"), [("model.patch_size=3", "model.patch_size"),
                                               ("model.depth=0", "model.depth")])
def test_bad_vit_sizes_are_refused(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        build_model(make_cfg("model=vit_tiny", override).model, SHAPE, 4)


def pruned_vit(make_cfg, *overrides):
    cfg = vit_cfg(make_cfg, *CHANNEL, "granularity.round_to=1", *overrides)
    model = build_model(cfg.model, SHAPE, 4)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=SHAPE)
    train_steps(model, pruner, 4, shape=SHAPE, classes=4, lr=0.05)
    pruner.finalize()
    return model, pruner


def test_heads_and_neurons_are_pruned_whole_and_the_compact_model_matches(make_cfg):
    model, pruner = pruned_vit(make_cfg)
    kinds = [g.kind for g in pruner.structure.groups]
    assert kinds == ["heads", "neurons"] * 2  # the residual stream is no group
    batch = torch.randn(8, *SHAPE)
    compact, check = compact_model(model, pruner.export_plan().removed_units, batch)
    assert check.fp64 <= TOLERANCE
    removed = 0
    for name, attn in model.named_modules():
        if not isinstance(attn, Attention):
            continue
        d, dim = attn.head_dim, attn.q.in_features
        rows = [torch.cat([layer.weight, layer.bias[:, None]], 1).reshape(-1, d * (dim + 1))
                for layer in (attn.q, attn.k, attn.v)]  # one row per head: its d rows + biases
        zero = torch.stack([(r == 0).all(1) for r in rows])
        assert (zero.any(0) == zero.all(0)).all(), name  # a head is zero in q, k and v or none
        kept = (~zero[0]).nonzero().flatten()
        # 3 heads at 0.5: the uniform budget rounds 1.5 up
        assert len(kept) == 1 == pruner.summary_sections()["heads"]["per_layer"][name][0]
        small = compact.get_submodule(name)
        cols = (kept[:, None] * d + torch.arange(d)).flatten()
        assert small.num_heads == 1 and small.q.weight.shape == (d, dim)
        assert torch.equal(small.proj.weight, attn.proj.weight[:, cols])  # its columns, whole
        assert torch.equal(small.v.weight, attn.v.weight[cols])
        removed += 2 * (4 * d * dim + 3 * d)  # 2 heads: q, k, v rows + biases, proj columns
    for name, mlp in model.named_modules():
        if isinstance(mlp, Mlp):
            half = mlp.fc1.out_features // 2
            assert compact.get_submodule(name).fc1.out_features == half
            removed += half * (2 * mlp.fc1.in_features + 1)  # fc1 rows + biases, fc2 columns
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) - count(compact) == removed


@pytest.mark.parametrize("method", ["gmp", "pdp"])
def test_head_runs_compact_and_export(make_cfg, tmp_path, method):
    # the whole run: GMP's heads leave the live model during training (compact_when_final),
    # PDP's soft masks harden at the end; both export the compact model
    cfg = vit_cfg(make_cfg, "granularity=channel", f"method={method}", "sparsity=0.5",
                  "trainer.epochs=3", "trainer.max_train_batches=2", "export.compact=true",
                  "export.safetensors=true")
    summary = run(cfg, tmp_path)
    assert summary["heads"]["per_layer"] == {"blocks.0.attn": [1, 3], "blocks.1.attn": [1, 3]}
    assert summary["export"]["compact"]["max_abs_diff_vs_masked"] <= TOLERANCE
    assert summary["channels"]["pruned"] == summary["channels"]["expected_pruned"]
    assert summary["export"]["compact"]["params"] < summary["params"]
    dense = load_file(tmp_path / "model.safetensors")  # the dense shapes, pruned rows zero
    q = dense["blocks.0.attn.q.weight"]
    assert q.shape == (192, 192) and int((q != 0).any(1).sum()) == 64


@pytest.mark.parametrize(("method", "granularity"),
                         [("pdp", "unstructured"), ("gmp", "unstructured"), ("pdp", "nm")])
def test_weight_granularities_on_vit(make_cfg, method, granularity):
    # the generic weight targets: every linear of the blocks and the patch embedding
    cfg = vit_cfg(make_cfg, f"method={method}", f"granularity={granularity}", "sparsity=0.5",
                  "trainer.epochs=2")
    model = build_model(cfg.model, SHAPE, 4)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=SHAPE)
    # patch_embed; q, k, v, proj, fc1, fc2 (N:M: not the 1-channel patch embedding)
    assert len(pruner.structure.names) == (0 if granularity == "nm" else 1) + 2 * 6
    train_steps(model, pruner, 4, shape=SHAPE, classes=4, lr=0.05)
    pruner.finalize()
    weights = [model.get_submodule(n).weight for n in pruner.structure.names]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == sum(w.numel() for w in weights) // 2
    if granularity == "nm":  # 2:4 along every row of every linear
        fc1 = model.blocks[0].mlp.fc1.weight
        assert ((fc1.reshape(-1, 4) != 0).sum(1) == 2).all()


def test_heads_on_bert_tiny(make_cfg):
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", *CHANNEL,
                   "granularity.round_to=1")
    model = build_model(cfg.model, (16,), 2)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=(16,))
    pruner.finalize()
    heads = pruner.summary_sections()["heads"]["per_layer"]
    assert list(heads.values()) == [[1, 2], [1, 2]]  # 2 heads of 64 per layer, one kept
    ids = torch.randint(1000, 2000, (4, 16))
    compact, check = compact_model(model, pruner.export_plan().removed_units, ids)
    assert check.fp64 <= TOLERANCE
    attention = compact.hf.bert.encoder.layer[0].attention
    assert attention.self.num_attention_heads == 1 and attention.self.query.out_features == 64
    assert attention.output.dense.in_features == 64
    assert compact.hf.bert.encoder.layer[0].intermediate.dense.out_features == 256


def test_units_not_in_the_targets_stay_dense(make_cfg):
    cfg = vit_cfg(make_cfg, *CHANNEL, "method.targets.exclude=[attn.k]")
    model = build_model(cfg.model, SHAPE, 4)
    pruner = build_pruner(cfg, model, steps_per_epoch=2, input_shape=SHAPE)
    assert [g.kind for g in pruner.structure.groups] == ["neurons", "neurons"]
    assert "blocks.0.attn.q" in pruner.left_dense

