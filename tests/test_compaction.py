"""In-training compaction: pruned channels leave the live model once their pruning is final,
and training the smaller network is the same function as training the masked one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdprune.models import build_model
from pdprune.pruning import build_pruner

SHAPE = (1, 8, 8)
GMP = ["model=resnet20", "model.width=0.5", "granularity=channel", "granularity.round_to=1",
       "method=gmp", "sparsity=0.5", "trainer.epochs=4", "schedule.start_epoch=1",
       "schedule.end_epoch=3", "schedule.dt=1"]
OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2),
}


def batch():
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return x, torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(2))


def train(cfg, optimizer: str, compact: bool, epochs: int = 4, steps: int = 3):
    """fp64 resnet20, GMP on channels updating every step; returns (model, pruner, sizes)."""
    torch.manual_seed(0)
    model = build_model(cfg.model, SHAPE, 10).double()
    pruner = build_pruner(cfg, model, steps_per_epoch=steps, input_shape=SHAPE)
    pruner.compact_when_final = compact
    opt = OPTIMIZERS[optimizer](model.parameters())
    pruner.bind(opt)
    x, y = batch()
    sizes, step = [], 0
    for epoch in range(epochs):
        pruner.begin_epoch(epoch)
        sizes.append(sum(p.numel() for p in model.parameters()))
        for _ in range(steps):
            pruner.before_step(step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        pruner.end_epoch(epoch + 1)
    return model, pruner, sizes


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_compacted_training_is_the_masked_function(make_cfg, optimizer):
    cfg = make_cfg(*GMP)
    masked, masked_pruner, masked_sizes = train(cfg, optimizer, compact=False)
    compact, compact_pruner, compact_sizes = train(cfg, optimizer, compact=True)
    assert masked_sizes[0] == compact_sizes[0] == masked_sizes[-1]
    assert compact_sizes[-1] < 0.5 * compact_sizes[0]  # channels left the live model
    x, _ = batch()
    masked.eval(), compact.eval()
    torch.testing.assert_close(compact(x), masked(x), rtol=0, atol=1e-9)
    masked_pruner.finalize(), compact_pruner.finalize()
    # model.safetensors holds the dense architecture's shapes: loaded into the dense model it
    # is the masked model's function (the removed channels and the weights reading them: 0)
    reloaded = build_model(cfg.model, SHAPE, 10).double().eval()
    reloaded.load_state_dict(compact_pruner.export_plan().dense_state)
    torch.testing.assert_close(reloaded(x), masked(x), rtol=0, atol=1e-9)


def test_optimizer_state_follows_the_removed_channels(make_cfg):
    cfg = make_cfg(*GMP)
    model, pruner, _ = train(cfg, "sgd", compact=True, epochs=3)
    opt = pruner.optimizer
    live = list(model.parameters())
    held = [p for group in opt.param_groups for p in group["params"]]
    assert {id(p) for p in live} <= {id(p) for p in held}  # the new Parameters are trained
    for p in live:
        assert opt.state[p]["momentum_buffer"].shape == p.shape


def test_soft_masks_are_not_compacted(make_cfg):
    cfg = make_cfg(*GMP[:4], "method=pdp", "sparsity=0.5", "trainer.epochs=3")
    model, _, sizes = train(cfg, "sgd", compact=True, epochs=3)
    assert sizes[0] == sizes[-1]  # PDP decides at hardening: nothing is final before


def test_pdp_hardened_at_the_ramp_end_trains_compacted(make_cfg):
    cfg = make_cfg(*GMP[:4], "method=pdp", "sparsity=0.5", "trainer.epochs=4",
                   "method.harden_at=ramp_end", "schedule.warmup_epochs=1",
                   "schedule.ramp_epochs=1")
    model, pruner, sizes = train(cfg, "sgd", compact=True)
    # warm-up epoch 0, the target from epoch 1: hardened after one soft epoch at the target
    assert sizes[0] == sizes[1] > sizes[2] == sizes[3]
    assert pruner.structure.final  # binary from then on
    assert pruner.finalize() and pruner.achieved_sparsity() == 0.5


def test_harden_at_ramp_end_needs_channels(make_cfg):
    from pdprune.config.validate import validate
    from pdprune.errors import ConfigError

    with pytest.raises(ConfigError, match="method.harden_at"):
        validate(make_cfg("method=pdp", "method.harden_at=ramp_end"))


def test_a_compacted_network_trains_without_mask_products(make_cfg):
    """Once the pruned channels are gone, every remaining binary mask keeps all a member has: the
    parameters pass through their parametrizations untouched (no product, no extra backward)."""
    from torch.nn.utils import parametrize

    model, pruner, _ = train(make_cfg(*GMP), "sgd", compact=True)
    masked = [(m, name) for m in model.modules() for name in ("weight", "bias")
              if parametrize.is_parametrized(m, name)]
    assert masked  # the masks stay on (the schedule could still move them)
    for module, name in masked:
        assert getattr(module, name) is getattr(module.parametrizations, name).original
    # in the masked twin, the members of pruned groups still multiply by their masks
    twin, _, _ = train(make_cfg(*GMP), "sgd", compact=False)
    assert any(m.weight is not m.parametrizations.weight.original
               for m in twin.modules() if parametrize.is_parametrized(m, "weight"))
