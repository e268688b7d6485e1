"""Golden regression check: tiny recipes, one per method and granularity, whose results must
not change unless a commit means them to.

    python scripts/golden.py record [--out FILE]   # run the recipes, store what they give
    python scripts/golden.py check  [--golden FILE] # run them again, compare

Each recipe is a few seconds on one CPU thread (synthetic data, small models, few epochs, no
latency or exports beyond model.safetensors), run in-process by `pdprune.run.run` with the
config composed as `prune-train` composes it. For every recipe the file keeps the sha256 of
`model.safetensors`, val and test top-1 and the achieved sparsity, under a machine
fingerprint: torch's version, `torch.backends.cpu.get_cpu_capability()` and the CPU model name
(float results differ between CPUs and torch builds, so recorded bytes only bind where they
were recorded). Several fingerprints may coexist in tests/golden/golden.json.

`check` on a machine whose fingerprint is recorded: the weights must be byte-identical. On any
other machine it compares with the first recorded fingerprint: achieved sparsity exactly (a
budget is a count of weights, channels or blocks: it does not depend on float rounding, for
these recipes with granularity.round_to=1) and top-1 within ACCURACY_TOLERANCE.

A change that must not alter results (most of them): `check` passes, nothing to record.

A change that alters results on purpose (new training math, another RNG consumption order, a
new default) re-records in the same commit and says in its message which recipes changed and
why: after the change, `python scripts/golden.py record --replace` (every recorded
fingerprint described the old results, so --replace drops them all and keeps this machine's).
Without --replace, `record` adds or updates this machine's fingerprint and keeps the others:
that is how a second machine type joins.

Recording a commit other than the working tree's (the commit before a change, to compare a
change against; a new recipe, recorded on the old code): check it out into a clean worktree
and run this script there, with its imports taken from that worktree:
    git worktree add /tmp/before HEAD
    cd /tmp/before && python -I REPO/scripts/golden.py record --out REPO/tests/golden/golden.json
(`python -I` ignores PYTHONPATH and the user site; the script then puts the current directory
first on sys.path, so an editable install of REPO does not win; it prints which pdprune it
imported.)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if sys.flags.isolated:  # python -I: import pdprune from the current directory (a worktree)
    sys.path.insert(0, str(Path.cwd()))

import torch  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "golden.json"

# One cross-CPU float difference changes a few predictions of 64 (val and test are 64 synthetic
# samples each: one sample is 0.016); a real regression (a wrong mask, a broken schedule) costs
# far more or shows in the sparsity. 0.1 is six samples.
ACCURACY_TOLERANCE = 0.1

COMMON = ("dataset=synthetic", "trainer.threads=1", "trainer.progress=false", "seed=0")
MLP = ("model.hidden=[32]", "trainer.epochs=4")
RESNET = ("model=resnet20", "model.width=0.5", "trainer.epochs=6")
CHANNEL = ("granularity=channel", "granularity.round_to=1")

# name -> overrides (besides COMMON)
RECIPES: dict[str, tuple[str, ...]] = {
    "dense": (*MLP, "method=dense"),
    "pdp_unstructured": (*MLP, "method=pdp"),
    "gmp_unstructured": (*MLP, "method=gmp", "schedule.dt=2"),  # dt=10 > 8 steps: one-shot
    "magnitude_oneshot": (*MLP, "method=magnitude"),
    "random": (*MLP, "method=random"),
    "pdp_nm": (*MLP, "method=pdp", "granularity=nm"),
    "gmp_channel": (*RESNET, "method=gmp", *CHANNEL, "sparsity=0.5"),
    "pdp_channel": (*RESNET, "method=pdp", *CHANNEL, "sparsity=0.5"),
    "epi_channel": (*RESNET, "schedule=epi", *CHANNEL, "sparsity=0.5"),
    "layerprune": (*RESNET, "method=layerprune", "method.layers_to_remove=2",
                   "schedule.epoch=1", "export.latency_batch_sizes=[1]",
                   "export.latency_warmup=1", "export.latency_repeats=1",
                   "export.latency_compiled=false"),
}


def compose(overrides: tuple[str, ...]):
    """pdprune/configs/train.yaml with overrides, as prune-train (and tests/conftest.py) do."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pdprune.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fingerprint() -> str:
    """What float results depend on: torch's build, its CPU kernels' ISA, the CPU."""
    return f"torch {torch.__version__} | {torch.backends.cpu.get_cpu_capability()} | {cpu_model()}"


def run_recipe(name: str) -> dict:
    from pdprune.run import run

    cfg = compose((*COMMON, *RECIPES[name]))
    threads = torch.get_num_threads()  # run() sets 1 for the whole process: give it back
    with tempfile.TemporaryDirectory(prefix=f"golden_{name}_") as folder:
        run_dir = Path(folder)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                summary = run(cfg, run_dir)
        finally:
            torch.set_num_threads(threads)
        digest = hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest()
    return {"sha256": digest,
            "val_top1": summary["accuracy"]["val"]["top1"],
            "test_top1": summary["accuracy"]["test"]["top1"],
            "achieved_sparsity": summary["achieved_sparsity"]}


def run_all(names: list[str]) -> dict[str, dict]:
    results = {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_recipe(name)
        print(f"{name:18s} {time.perf_counter() - start:5.1f} s  {results[name]}", flush=True)
    return results


def source() -> str:
    """Which pdprune (and commit) produced the results, for the record."""
    import pdprune

    folder = Path(pdprune.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "pdprune"],
                           capture_output=True, text=True).stdout.strip()
    return f"{folder} at {commit or 'unknown commit'}{' (modified)' if dirty else ''}"


def compare(name: str, got: dict, want: dict, exact: bool) -> list[str]:
    """What differs between a recipe's result and its record ([] when it passes)."""
    if exact:
        keys = ["sha256", "val_top1", "test_top1", "achieved_sparsity"]
        return [f"{name}: {key} {got[key]} != recorded {want[key]}"
                for key in keys if got[key] != want[key]]
    problems = []
    if got["achieved_sparsity"] != want["achieved_sparsity"]:
        problems.append(f"{name}: achieved_sparsity {got['achieved_sparsity']} != recorded "
                        f"{want['achieved_sparsity']}")
    for key in ("val_top1", "test_top1"):
        if abs(got[key] - want[key]) > ACCURACY_TOLERANCE:
            problems.append(f"{name}: {key} {got[key]:.4f} is more than {ACCURACY_TOLERANCE} "
                            f"from recorded {want[key]:.4f}")
    return problems


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"machines": {}}


def reference(golden: dict) -> tuple[dict, bool]:
    """This machine's record (bytes bind) or else the first recorded one (tolerances)."""
    machines = golden["machines"]
    if not machines:
        raise SystemExit(f"no golden results recorded in {GOLDEN}: run `record` first")
    mine = machines.get(fingerprint())
    return (mine, True) if mine else (next(iter(machines.values())), False)


def check(path: Path, names: list[str] | None = None) -> list[str]:
    """Run the recipes and return every difference from the record ([] when all pass)."""
    want, exact = reference(load(path))
    names = names or list(RECIPES)
    missing = [n for n in names if n not in want["results"]]
    if missing:
        return [f"{n}: not recorded in {path} (re-record, see scripts/golden.py)" for n in missing]
    got = run_all(names)
    return [p for n in names for p in compare(n, got[n], want["results"][n], exact)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "check"])
    parser.add_argument("--out", "--golden", dest="path", type=Path, default=GOLDEN)
    parser.add_argument("--replace", action="store_true",
                        help="record: drop every other machine's fingerprint")
    parser.add_argument("--recipe", action="append", choices=list(RECIPES),
                        help="only this recipe (repeatable)")
    args = parser.parse_args(argv)
    logging.getLogger("pdprune").setLevel(logging.WARNING)
    print(f"fingerprint: {fingerprint()}\npdprune: {source()}", flush=True)
    if args.command == "record":
        golden = {"machines": {}} if args.replace else load(args.path)
        results = run_all(args.recipe or list(RECIPES))
        entry = golden["machines"].setdefault(fingerprint(), {"results": {}})
        entry["source"] = source()
        entry["results"].update(results)
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(json.dumps(golden, indent=1) + "\n")
        print(f"recorded {len(results)} recipes in {args.path}")
        return 0
    _, exact = reference(load(args.path))
    problems = check(args.path, args.recipe)
    for line in problems:
        print(line)
    mode = "bytes identical" if exact else f"tolerance {ACCURACY_TOLERANCE}, sparsity exact"
    print(f"golden check ({mode}): {'FAILED' if problems else 'passed'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
