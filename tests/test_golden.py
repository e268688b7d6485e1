"""The golden regression check (scripts/golden.py): tiny recipes, one per method and
granularity, give the recorded model.safetensors bytes on a machine whose fingerprint is
recorded, and the recorded sparsity (accuracy within a tolerance) on any other. The record was
made on the commit before a change; a change that alters results on purpose re-records (see the
script's docstring)."""

from __future__ import annotations

import pytest

from .test_bench import load_bench

golden = load_bench("golden")

RECORD = {"sha256": "ab" * 32, "val_top1": 0.90625, "test_top1": 0.875, "achieved_sparsity": 0.5}


@pytest.mark.parametrize("name", list(golden.RECIPES))
def test_recipe_gives_its_golden_result(name):
    assert golden.check(golden.GOLDEN, [name]) == []


def test_every_recipe_is_recorded_on_every_machine():
    machines = golden.load(golden.GOLDEN)["machines"]
    assert machines
    for record in machines.values():
        assert set(record["results"]) == set(golden.RECIPES)


def test_at_home_bytes_bind_elsewhere_sparsity_exactly_and_accuracy_within_tolerance():
    other_bytes = {**RECORD, "sha256": "cd" * 32}
    assert golden.compare("r", other_bytes, RECORD, exact=True) == \
        [f"r: sha256 {'cd' * 32} != recorded {'ab' * 32}"]
    assert golden.compare("r", other_bytes, RECORD, exact=False) == []
    near = {**other_bytes, "val_top1": 0.90625 - 0.09375, "test_top1": 0.875 + 0.0625}
    assert golden.compare("r", near, RECORD, exact=False) == []
    far = {**other_bytes, "test_top1": 0.875 - 0.125, "achieved_sparsity": 0.5 + 1 / 448}
    problems = golden.compare("r", far, RECORD, exact=False)
    assert [p.split()[1] for p in problems] == ["achieved_sparsity", "test_top1"]


def test_a_recorded_fingerprint_binds_bytes_an_unknown_one_falls_back(monkeypatch):
    record = {"machines": {"torch 1 | AVX2 | cpu A": {"results": {"a": 1}},
                           "torch 1 | AVX512 | cpu B": {"results": {"b": 2}}}}
    monkeypatch.setattr(golden, "fingerprint", lambda: "torch 1 | AVX512 | cpu B")
    assert golden.reference(record) == ({"results": {"b": 2}}, True)
    monkeypatch.setattr(golden, "fingerprint", lambda: "torch 2 | AVX512 | cpu B")
    assert golden.reference(record) == ({"results": {"a": 1}}, False)


def test_the_fingerprint_names_torch_its_cpu_capability_and_the_cpu():
    import torch

    version, capability, cpu = golden.fingerprint().split(" | ")
    assert version == f"torch {torch.__version__}"
    assert capability == torch.backends.cpu.get_cpu_capability() and cpu
