"""The public API (pdprune.Pruning) driven by a plain PyTorch loop, as docs/api.md shows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

import pdprune
from pdprune.errors import PdpruneError

STEPS_PER_EPOCH, EPOCHS = 4, 4


def cnn() -> nn.Module:
    """Conv-BN-ReLU x2, then two Linear layers: a coupled-channel structure small enough to
    train in milliseconds."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 1, 8, 8, generator=gen), torch.randint(4, (16,), generator=gen))
            for _ in range(STEPS_PER_EPOCH)]


def optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def train(model, pruning, opt, start: int = 0, stop: int = STEPS_PER_EPOCH * EPOCHS) -> None:
    """Optimizer steps [start, stop) of the documented loop: step() after every optimizer
    step, end_epoch() after each epoch's last."""
    data = batches()
    for step in range(start, stop):
        x, y = data[step % len(data)]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruning.step()
        if (step + 1) % len(data) == 0:
            pruning.end_epoch()


def prune(model, **kwargs) -> pdprune.Pruning:
    return pdprune.Pruning(model, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, **kwargs)


def pruned_weights(model: nn.Module, pruning: pdprune.Pruning) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    return {name: modules[name].weight.detach() for name in pruning.layers}


@pytest.mark.parametrize("method,budget", [("pdp", "global"), ("magnitude", "uniform"),
                                           ("magnitude", "global")])
def test_finalize_reaches_the_budget_to_the_weight(method, budget):
    model = cnn()
    pruning = prune(model, method=method, sparsity=0.8, settings={"method.budget": budget})
    train(model, pruning, optimizer(model))
    summary = pruning.finalize()
    weights = pruned_weights(model, pruning)
    zeros = {name: int((w == 0).sum()) for name, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    if budget == "global":
        assert sum(zeros.values()) == round(0.8 * total)
    else:
        assert zeros == {name: round(0.8 * w.numel()) for name, w in weights.items()}
    assert summary["pruned_weights"] == sum(zeros.values())
    assert summary["prunable_weights"] == total
    assert summary["achieved_sparsity"] == sum(zeros.values()) / total
    assert summary["target_sparsity"] == 0.8
    assert not any(hasattr(m, "parametrizations") for m in model.modules())  # baked


def test_nm_keeps_n_of_every_m_weights():
    model = cnn()
    pruning = prune(model, granularity="nm", settings={"granularity.n": 1})  # 1:4
    train(model, pruning, optimizer(model))
    summary = pruning.finalize()
    assert summary["achieved_sparsity"] == 0.75
    weights = pruned_weights(model, pruning)
    assert set(weights) == {"3", "8"}  # the first conv's single input channel: no group of 4
    for w in weights.values():
        groups = (w.permute(0, 2, 3, 1) if w.dim() == 4 else w).reshape(-1, 4)
        assert ((groups != 0).sum(dim=1) == 1).all()


def test_channel_pruning_compacts_to_the_same_outputs():
    model = cnn()
    pruning = prune(model, granularity="channel", sparsity=0.5, input_shape=(1, 8, 8),
                    settings={"granularity.round_to": 1})
    train(model, pruning, optimizer(model))
    summary = pruning.finalize()
    assert summary["unit"] == "channels"
    assert summary["channels"]["pruned"] == 32 == summary["channels"]["total"] // 2
    x = batches()[0][0]
    masked = model.eval()(x)
    small = pruning.compact(x).eval()
    assert torch.allclose(small(x), masked, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(
        p.numel() for p in cnn().parameters())
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)] != [16, 16]


def test_compact_refuses_weight_granularity():
    model = cnn()
    pruning = prune(model, method="magnitude", sparsity=0.5)
    pruning.finalize()
    with pytest.raises(PdpruneError, match="granularity=unstructured"):
        pruning.compact(batches()[0][0])


def test_state_dict_round_trip_continues_bit_equal():
    """One run straight through; one stopped mid-ramp, rebuilt from its pruning state, model
    and optimizer state_dicts, and continued: the same final weights."""
    kwargs = {"method": "pdp", "sparsity": 0.8, "settings": {"method.tau": 3e-4}}
    straight = cnn()
    pruning = prune(straight, **kwargs)
    train(straight, pruning, optimizer(straight))
    pruning.finalize()

    first = cnn()
    pruning = prune(first, **kwargs)
    opt = optimizer(first)
    stop = STEPS_PER_EPOCH + 2  # mid-epoch, soft masks on (warm-up is one epoch)
    train(first, pruning, opt, stop=stop)
    saved = {"pruning": pruning.state_dict(), "model": first.state_dict(),
             "optim": opt.state_dict()}
    assert 0 < pruning.target_sparsity < 0.8

    resumed = cnn()
    pruning = prune(resumed, **kwargs)
    pruning.load_state_dict(saved["pruning"])  # first: a layer-pruned model regains its shape
    resumed.load_state_dict(saved["model"])
    opt = optimizer(resumed)
    opt.load_state_dict(saved["optim"])
    assert (pruning.steps, pruning.epochs_done) == (stop, 1)
    train(resumed, pruning, opt, start=stop)
    pruning.finalize()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("method,schedule,settings", [
    ("pdp", None, {"method.tau": 3e-4}),
    ("magnitude", "cubic", {"method.budget": "global", "schedule.dt": 2}),
])
def test_cli_config_and_keywords_give_the_same_masks(make_cfg, method, schedule, settings):
    """Pruning.from_config (the CLI's way, from prune-train's composed config) and the keyword
    constructor build the same config and prune the same weights."""
    overrides = [f"method={method}", "sparsity=0.7", f"trainer.epochs={EPOCHS}",
                 *([f"schedule={schedule}"] if schedule else []),
                 *(f"{key}={value}" for key, value in settings.items())]
    cli_model = cnn()
    cli = pdprune.Pruning.from_config(make_cfg(*overrides), cli_model,
                                      steps_per_epoch=STEPS_PER_EPOCH)
    cli.begin_epoch(0)  # the loop hooks the CLI's trainer calls; __init__ calls them itself
    cli.before_step(0)
    api_model = cnn()
    api = prune(api_model, method=method, sparsity=0.7, schedule=schedule, settings=settings)
    assert OmegaConf.to_container(api.config, resolve=True) == OmegaConf.to_container(
        cli.config, resolve=True)
    for model, pruning in ((cli_model, cli), (api_model, api)):
        train(model, pruning, optimizer(model))
        pruning.finalize()
    assert cli.layers == api.layers
    for name, w in pruned_weights(cli_model, cli).items():
        assert torch.equal(w == 0, pruned_weights(api_model, api)[name] == 0), name


def test_settings_carry_regexes_and_lists_unchanged():
    """A settings value reaches the config as the Python value it was: regex backslashes are
    not doubled, a string that looks like null or a number stays a string, a numpy scalar is
    its number."""
    cfg = pdprune.compose_config(settings={"method.targets.include": [r"^\d$", "null", "1e-3"],
                                           "method.targets.exclude": ["it's", "a,b"]})
    assert list(cfg.method.targets.include) == [r"^\d$", "null", "1e-3"]
    assert list(cfg.method.targets.exclude) == ["it's", "a,b"]
    assert pdprune.compose_config(sparsity=np.float32(0.5)).sparsity == 0.5
    pruning = prune(cnn(), method="magnitude", settings={"method.targets.include": [r"^[03]$"]})
    assert pruning.layers == ["0", "3"]


@pytest.mark.parametrize("kwargs,key", [
    ({"method": "nope"}, "method=nope"),
    ({"settings": {"method.nope": 1}}, "method.nope"),
    ({"settings": {"method.tau": "abc"}}, "method.tau"),
    ({"sparsity": 1.5}, "sparsity"),
    ({"granularity": "channel"}, "input_shape"),
    ({"settings": {"method.targets.include": ["nothing"]}}, "method.targets"),
])
def test_bad_input_is_one_line_naming_the_key(kwargs, key):
    with pytest.raises(PdpruneError) as err:
        prune(cnn(), **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(key), message


def test_steps_per_epoch_must_be_positive():
    with pytest.raises(PdpruneError, match="^steps_per_epoch=0"):
        pdprune.Pruning(cnn(), steps_per_epoch=0, epochs=2)
