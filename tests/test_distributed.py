"""Data-parallel training: torchrun with 2 CPU processes (gloo) against one process on the same
global batch, and the pieces that make them agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pdprune.distributed import SINGLE, RankSlice, World, global_mean_scale, world_from_env

# The digits, MLP, 3 epochs of 12 batches of 63 (ranks get 32 and 31 samples: unequal slices
# exercise the loss weighting), no progress bars.
RUN = ("experiment=smoke", "trainer.epochs=3", "trainer.max_train_batches=12",
       "dataset.batch_size=63", "trainer.progress=false")


def launch(run_dir: Path, *args: str, ranks: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={ranks}"] if ranks > 1 else [sys.executable]
    proc = subprocess.run([*launcher, "-m", "pdprune", *RUN, *args, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("method", [("method=gmp",), ("method=pdp", "method.tau=0.01")],
                         ids=["gmp", "pdp"])
def test_two_ranks_agree_with_each_other_and_with_one_process(tmp_path, method):
    launch(tmp_path / "one", *method)
    # loggers write on rank 0 only: one folder for every rank's event files would hold one
    launch(tmp_path / "two", *method, "logger=[csv,tensorboard]",
           f"logger.tensorboard.log_dir={tmp_path}/tb", ranks=2)

    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2
    assert summary["distributed"]["backend"] == "gloo"
    # weights, masks and buffers of rank 1 checked against rank 0's, element by element
    assert summary["distributed"]["max_difference_across_ranks"] == 0.0
    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        assert torch.equal(one[name] == 0, two[name] == 0), f"{name}: masks differ"
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)
    assert summary["achieved_sparsity"] == pytest.approx(0.9, abs=1e-4)
    # only rank 0 wrote: one record per epoch, one summary
    metrics = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == [1, 2, 3]
    assert len(list(tmp_path.rglob("summary.json"))) == 2
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "two" / "metrics.csv").read_text().count("\n") == 4  # header + 3 epochs


def test_rank_slices_partition_every_batch():
    batches = [(torch.arange(7).float(), torch.arange(7)), (torch.arange(4).float(),
                                                            torch.arange(4))]

    class Loader(list):
        num_samples = 11

        def state_dict(self):
            return {"batch": 0}

    slices = [list(RankSlice(Loader(batches), World(rank=r, size=3))) for r in range(3)]
    for i, (_, y) in enumerate(batches):
        parts = [s[i] for s in slices]
        assert torch.equal(torch.cat([p[1] for p in parts]), y)  # in order, each sample once
        assert [len(p[1]) for p in parts] == ([3, 2, 2] if i == 0 else [2, 1, 1])
    assert len(RankSlice(Loader(batches), World(rank=0, size=3))) == 2
    assert RankSlice(Loader(batches), World(rank=0, size=3)).num_samples == 11
    assert RankSlice(Loader(batches), World(rank=0, size=3)).state_dict() == {"batch": 0}


def test_one_process_needs_no_process_group(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert world_from_env() == SINGLE and not SINGLE.active and SINGLE.is_main
    assert global_mean_scale(17, torch.device("cpu")) == 1.0
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == World(rank=1, size=4, local_rank=1)
