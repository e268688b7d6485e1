"""pdprune inside Hugging Face's Trainer (pdprune.integrations), and the two examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import transformers  # noqa: E402

from pdprune.errors import PdpruneError  # noqa: E402
from pdprune.integrations import PruningCallback  # noqa: E402
from pdprune.integrations.transformers import schedule_length  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tiny_bert() -> torch.nn.Module:
    """A randomly initialised 2-layer BERT classifier, built locally (no download)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64, num_labels=2)
    return transformers.BertForSequenceClassification(config)


class Synthetic(torch.utils.data.Dataset):
    """40 random token sequences; the label is a function of the first token."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 100, (40, 12), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": int(self.ids[i, 0] > 50)}


def test_callback_prunes_the_encoder_to_the_weight(tmp_path):
    model = tiny_bert()
    callback = PruningCallback(method="pdp", sparsity=0.9)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=12, learning_rate=1e-3, use_cpu=True, report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Synthetic(),
                                   callbacks=[callback])
    trainer.train()

    pruning = callback.pruning
    # 10 batches of 4, 2 per optimizer step: 5 steps an epoch; 12 steps end in the third
    assert (pruning.steps, pruning.epochs_done) == (12, 3)
    linears = {name: m for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)}
    encoder = [name for name in linears if ".encoder." in name]
    assert pruning.layers == encoder  # not the pooler, not the classifier
    weights = [linears[name].weight for name in encoder]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.9 * total)
    assert callback.summary["achieved_sparsity"] == zeros / total
    for name in ("bert.pooler.dense", "classifier"):
        assert int((linears[name].weight == 0).sum()) == 0, name
    assert not any(hasattr(m, "parametrizations") for m in model.modules())  # plain again
    assert trainer.state.log_history[-1]["pdprune/achieved_sparsity"] == zeros / total


def test_schedule_length_counts_optimizer_steps():
    loader = list(range(10))  # 10 batches
    epochs = SimpleNamespace(gradient_accumulation_steps=3)
    assert schedule_length(epochs, SimpleNamespace(max_steps=8), loader) == (4, 2)
    assert schedule_length(epochs, SimpleNamespace(max_steps=6), loader) == (4, 2)
    assert schedule_length(epochs, SimpleNamespace(max_steps=3), loader) == (4, 1)
    assert schedule_length(epochs, SimpleNamespace(max_steps=7), iter(loader)) == (7, 1)


@pytest.mark.parametrize("kwargs,key", [
    ({"settings": {"method.nope": 1}}, "method.nope"),
    ({"method": "layerprune"}, "method=layerprune"),
    ({"sparsity": 2.0}, "sparsity"),
])
def test_bad_callback_keywords_fail_when_made(kwargs, key):
    with pytest.raises(PdpruneError) as err:
        PruningCallback(**kwargs)
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_missing_transformers_is_a_one_line_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    monkeypatch.delitem(sys.modules, "pdprune.integrations.transformers")
    with pytest.raises(PdpruneError, match="needs the package transformers") as err:
        from pdprune.integrations import PruningCallback  # noqa: F401
    assert "\n" not in str(err.value)


def run_example(name: str) -> list[str]:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()


@pytest.mark.slow
def test_custom_loop_example_reaches_90_percent():
    lines = run_example("custom_loop.py")
    assert lines[-1] == "achieved sparsity: 0.900"
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 10
    accuracy = float(re.search(r"final test accuracy (\S+)", lines[-2]).group(1))
    assert accuracy > 0.9


@pytest.mark.slow
def test_hf_trainer_example_reaches_90_percent():
    last = run_example("hf_trainer.py")[-1]
    match = re.fullmatch(r"eval accuracy: (\S+)  achieved sparsity: 0\.900", last)
    assert match, last
    assert float(match.group(1)) > 0.55  # trained: above the 50% of a coin flip
