"""Text classification: token ids as the one input tensor, datasets, targets, distillation, F1."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from pdprune.data import build_data
from pdprune.data.bundle import FirstBatches, TensorLoader
from pdprune.data.glue import TASKS, read_tsv
from pdprune.data.packaged_text import (
    bbc_news_folder,
    read_bbc_news,
    read_rotten_tomatoes,
    rotten_tomatoes_file,
)
from pdprune.data.text import TextExamples, tokenize, trim_padding
from pdprune.errors import ConfigError
from pdprune.models import build_model
from pdprune.models.text import load_tokenizer, mask_and_segments
from pdprune.pruning.targets import select_targets
from pdprune.run import run
from pdprune.train.distill import distillation_loss
from pdprune.train.evaluate import evaluate

TINY_MODEL = OmegaConf.create({"name": "bert_tiny", "path": None, "checkpoint": None})


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TINY_MODEL)


def test_mask_and_segments_equal_the_tokenizers(tokenizer):
    enc = tokenizer(["a film", "the best thing I saw"], ["it was fine", "no"], padding="longest",
                    return_tensors="pt")
    mask, segments = mask_and_segments(enc["input_ids"], tokenizer.pad_token_id,
                                       tokenizer.sep_token_id)
    assert torch.equal(mask, enc["attention_mask"])
    assert torch.equal(segments, enc["token_type_ids"])
    single = tokenizer(["one text only", "x"], padding="longest", return_tensors="pt")
    _, segments = mask_and_segments(single["input_ids"], tokenizer.pad_token_id,
                                    tokenizer.sep_token_id)
    assert not segments.any()


def test_ids_alone_give_the_logits_of_the_full_tokenizer_output(tokenizer):
    torch.manual_seed(0)
    model = build_model(TINY_MODEL, (32,), 3).eval()
    enc = tokenizer(["a film", "the best thing"], ["fine", "no it was not"], padding="longest",
                    return_tensors="pt")
    with torch.no_grad():
        full = model.hf(**enc).logits
        ours = model(enc["input_ids"])
    assert torch.allclose(ours, full, atol=1e-6)


def test_trim_padding_cuts_unused_columns():
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    assert torch.equal(trim_padding(0)(ids), ids[:, :2])


def test_tokens_are_cached_and_reused(tokenizer, tmp_path, monkeypatch):
    examples = TextExamples(["a good film", "bad"], [1, 0])
    first = tokenize(tokenizer, examples, 16, tmp_path)
    assert first.shape == (2, 16) and len(list(tmp_path.glob("*.pt"))) == 1
    monkeypatch.setattr(type(tokenizer), "__call__", lambda *a, **k: pytest.fail("re-tokenised"))
    assert torch.equal(tokenize(tokenizer, examples, 16, tmp_path), first)
    other = TextExamples(["a good film", "worse"], [1, 0])  # other texts: another entry
    monkeypatch.undo()
    tokenize(tokenizer, other, 16, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


@pytest.mark.parametrize("damage", [b"", b"\x80\x02random bytes", b"PK\x03\x04cut"])
def test_a_damaged_token_cache_is_rebuilt(tokenizer, tmp_path, damage):
    examples = TextExamples(["a good film", "bad"], [1, 0])
    first = tokenize(tokenizer, examples, 16, tmp_path)
    (cached,) = tmp_path.glob("*.pt")
    cached.write_bytes(damage)
    assert torch.equal(tokenize(tokenizer, examples, 16, tmp_path), first)
    assert torch.equal(torch.load(cached, weights_only=True), first)  # written anew


def test_rotten_tomatoes_has_its_12808_labelled_sentences(make_cfg, tmp_path):
    examples = read_rotten_tomatoes(rotten_tomatoes_file())
    assert len(examples) == 12808 and sum(examples.labels) == 7403  # fresh; 5,405 rotten
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", f"dataset.cache_dir={tmp_path}")
    data = build_data(cfg.dataset, 0, "cpu", cfg.model)
    sizes = [data.train.num_samples, data.val.num_samples, data.test.num_samples]
    assert sum(sizes) == 12808 and sizes[1] == sizes[2] == 1281
    x, y = next(iter(data.train))
    assert x.dtype == torch.long and x.shape[0] == 32 and x.shape[1] <= 128
    assert (x[:, -1] != 0).any()  # cut to the batch's longest sentence


def test_bbc_news_has_2225_articles_in_5_topics():
    examples, classes = read_bbc_news(bbc_news_folder())
    assert len(examples) == 2225 and len(classes) == 5 and "sports" in classes
    assert sorted(set(examples.labels)) == [0, 1, 2, 3, 4]


def write_mnli(root, rows_train: int = 48, rows_dev: int = 12) -> None:
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label"]
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train.tsv", rows_train), ("dev_matched.tsv", rows_dev)):
        lines = ["\t".join(header)]
        for i in range(n):
            label = labels[i % 3]
            # the label is readable from the hypothesis, so a model can learn it
            row = [str(i), "0", "0", "fiction", "-", "-", "-", "-", f"the cat sat {i}",
                   f"{label} {label} claim", label, label]
            lines.append("\t".join(row))
        lines.append("\t".join(["broken", "row"]))  # a malformed line is skipped
        (root / name).write_text("\n".join(lines) + "\n")


def test_glue_mnli_tsv_loads_and_trains(make_cfg, tmp_path):
    write_mnli(tmp_path)
    examples = read_tsv(tmp_path / "train.tsv", TASKS["mnli"])
    assert len(examples) == 48 and examples.labels[:3] == [0, 1, 2]
    assert examples.second[1] == "neutral neutral claim"
    cfg = make_cfg("model=bert_tiny", "dataset=mnli", f"dataset.root={tmp_path}",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.val_fraction=0.25",
                   "dataset.batch_size=8", "method=gmp", "sparsity=0.5", "trainer.epochs=4",
                   "trainer.progress=false", "optim.lr=1e-3")
    summary = run(cfg, tmp_path / "run")
    assert summary["num_classes"] == 3 and summary["dataset"] == "mnli"
    assert abs(summary["achieved_sparsity"] - 0.5) < 1e-3
    assert "f1" not in summary["accuracy"]["test"]  # three classes: accuracy only


def test_glue_missing_files_are_named(make_cfg, tmp_path):
    cfg = make_cfg("model=bert_tiny", "dataset=mnli", f"dataset.root={tmp_path}")
    with pytest.raises(ConfigError, match="missing train.tsv, dev_matched.tsv"):
        run(cfg, tmp_path / "run")


def test_saved_hugging_face_dataset_loads(make_cfg, tmp_path):
    datasets = pytest.importorskip("datasets")
    split = {"sentence": ["good", "bad", "great", "awful"] * 5, "label": [1, 0, 1, 0] * 5,
             "idx": list(range(20))}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(split),
                          "validation": datasets.Dataset.from_dict(split)}
                         ).save_to_disk(str(tmp_path / "sst2"))
    cfg = make_cfg("model=bert_tiny", "dataset=sst2", f"dataset.root={tmp_path / 'sst2'}",
                   f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.val_fraction=0.2")
    data = build_data(cfg.dataset, 0, "cpu", cfg.model)
    assert data.test.num_samples == 20 and data.val.num_samples == 4
    assert data.num_classes == 2


def test_encoder_linears_are_the_default_targets(make_cfg):
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes")
    model = build_model(cfg.model, (32,), 2)
    names = [name for name, _ in select_targets(model, cfg.method.targets)]
    assert len(names) == 12 and all(".encoder.layer." in n for n in names)  # 2 layers x 6
    assert names[-1].endswith("layer.1.output.dense")  # the last encoder layer stays in
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes",
                   "method.targets.include=[pooler,encoder]")
    names = [name for name, _ in select_targets(model, cfg.method.targets)]
    assert "hf.bert.pooler.dense" in names and "hf.classifier" not in names


def test_distillation_loss_matches_hand_computation():
    student = torch.tensor([[1.0, 0.0]], requires_grad=True)
    teacher, label, t, w = torch.tensor([[0.0, 2.0]]), torch.tensor([0]), 2.0, 0.95
    p = torch.softmax(teacher / t, 1)[0].tolist()  # teacher probabilities at T
    q = torch.softmax(student.detach() / t, 1)[0].tolist()
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    ce = -math.log(math.exp(1) / (math.exp(1) + 1))
    loss = distillation_loss(student, teacher, label, t, w)
    assert loss.item() == pytest.approx(w * t * t * kl + (1 - w) * ce, rel=1e-6)
    assert distillation_loss(student, teacher, label, t, 0.0).item() == pytest.approx(
        F.cross_entropy(student, label).item())
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_f1_of_two_classes():
    # predictions 1,1,0,0,1 against 1,0,1,0,1: tp 2, fp 1, fn 1 -> F1 = 4 / 6
    logits = torch.tensor([[0., 1], [0, 1], [1, 0], [1, 0], [0, 1]])
    labels = torch.tensor([1, 0, 1, 0, 1])
    model = torch.nn.Identity()
    result = evaluate(model, TensorLoader(logits, labels, 2), torch.device("cpu"))
    assert result["f1"] == pytest.approx(4 / 6) and result["top1"] == pytest.approx(0.6)


def test_first_batches_limits_an_epoch_and_keeps_the_loader_consistent():
    x, y = torch.arange(40.0)[:, None], torch.arange(40)
    full = TensorLoader(x, y, 4, shuffle=True, seed=3)
    limited = FirstBatches(TensorLoader(x, y, 4, shuffle=True, seed=3), 3)
    assert len(limited) == 3
    first = [b[1] for b in limited]
    assert len(first) == 3 and torch.equal(torch.cat(first), torch.cat([b[1] for b in full])[:12])
    state = limited.state_dict()  # between epochs: a fresh draw next, the same as a restart
    second = [b[1] for b in limited]
    limited.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(second, [b[1] for b in limited], strict=True))


def test_text_and_image_pairs_are_checked(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="needs a text dataset"):
        run(make_cfg("model=bert_tiny"), tmp_path)
    with pytest.raises(ConfigError, match="needs a text model"):
        run(make_cfg("dataset=rotten_tomatoes"), tmp_path)
    with pytest.raises(ConfigError, match="model.path=null: model=hf needs the folder"):
        run(make_cfg("model=hf", "dataset=rotten_tomatoes"), tmp_path)
    with pytest.raises(ConfigError, match="no config.json"):
        run(make_cfg("model=hf", f"model.path={tmp_path}", "dataset=rotten_tomatoes"), tmp_path)


def test_nm_on_bert_holds_exactly_n_per_group(make_cfg, tmp_path):
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", "method=pdp",
                   "granularity=nm", "sparsity=0.5", "experiment=smoke",
                   "trainer.max_train_batches=4", f"dataset.cache_dir={tmp_path}",
                   "trainer.progress=false")
    summary = run(cfg, tmp_path / "run")
    groups = summary["groups"]
    assert groups["exact"] == groups["total"] == 393216 // 4, groups  # every encoder weight


@pytest.mark.slow
def test_bert_smoke_command_runs_in_seconds(tmp_path):
    from .test_cli import prune_train, summaries

    proc = prune_train(tmp_path, "model=bert_tiny", "dataset=rotten_tomatoes", "method=pdp",
                       "sparsity=0.9", "experiment=smoke", "trainer.progress=false",
                       f"dataset.cache_dir={tmp_path / 'cache'}")
    (summary,) = summaries(tmp_path / "runs")
    assert abs(summary["achieved_sparsity"] - 0.9) <= 1e-3
    assert "f1" in summary["accuracy"]["test"] and "F1" in proc.stdout


@pytest.mark.slow
def test_distillation_with_a_teacher_fine_tuned_first(make_cfg, tmp_path):
    cfg = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", "method=pdp", "sparsity=0.5",
                   "experiment=smoke", "trainer.max_train_batches=5",
                   "trainer.distill.enabled=true", "trainer.distill.teacher_epochs=1",
                   f"dataset.cache_dir={tmp_path}", "trainer.progress=false")
    run(cfg, tmp_path / "run")
    teacher = tmp_path / "run" / "teacher"
    assert (teacher / "model.safetensors").is_file() and (teacher / "metrics.jsonl").is_file()
    # a second run takes that teacher instead of fine-tuning one
    cfg2 = make_cfg("model=bert_tiny", "dataset=rotten_tomatoes", "method=pdp", "sparsity=0.5",
                    "experiment=smoke", "trainer.max_train_batches=5",
                    "trainer.distill.enabled=true", f"trainer.distill.teacher={teacher}",
                    f"dataset.cache_dir={tmp_path}", "trainer.progress=false")
    summary = run(cfg2, tmp_path / "run2")
    assert not (tmp_path / "run2" / "teacher").exists()
    assert abs(summary["achieved_sparsity"] - 0.5) <= 1e-3


def test_export_batch_joins_only_batches_of_one_length():
    from pdprune.run import sample_batch

    ids = torch.tensor([[5, 6, 7, 0], [5, 0, 0, 0], [5, 6, 0, 0], [5, 6, 0, 0], [9, 0, 0, 0]])
    loader = TensorLoader(ids, torch.zeros(5, dtype=torch.long), 2, transform=trim_padding(0))
    assert torch.equal(sample_batch(loader, 4), ids[:2, :3])  # the next batch is 2 long
    assert sample_batch(TensorLoader(ids, torch.zeros(5), 2), 4).shape == (4, 4)
