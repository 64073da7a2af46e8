"""The pool `benchmarks/efficient_benchmarking.py` studies: trained `lm` candidates, each graded on the whole suite.

Each model is a genome of the block catalogue drawn at random (search_efficiency's draws,
in the `lm` rung's space, as `benchmarks/lm_discovery.py` uses it) or one of the three
hand-written baselines, trained at `short` (rung `scale`) through the harness in the process
sandbox (forked from its zygote, `sandbox.zygote`: the path every job takes, held-out rows and
suite from the host's secret) and graded item by item on the whole downstream suite (`evaluators.suite`).
Results are cached one model at a time (`~/.cache/archlab/suite_pool`, keyed by the task's
code, the suite's code and the spec), so an interrupted build resumes.

The pool file (.npz): `Y` [models, items] expected accuracy, `C` [models, items] top choice
right, `scenarios` [items] (int), `scenario_names`, `models` (ids), `item_tokens` [items]
(tokens the sandbox runs forward to score each item), `bits_per_byte` [models].

What this does not do: train at `full` (the loop fits anchors at `short`, where they are used).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import search_efficiency as se  # noqa: E402

CACHE = Path.home() / ".cache/archlab/suite_pool"
LIMITS = {"wall_seconds": 1800, "memory_mb": 4096, "cpus": 1}
MODELS, SCALE = 36, 0


def _spec(scale: int):
    from evaluators.tasks import get_task
    return get_task("lm").default_spec(scale=scale)


def cache_key(spec) -> str:
    """The spec and the suite's items (their fingerprint: the held-out text, the host's secret and the suite's
    code that draws them): what a cached grade depends on."""
    from evaluators.heldout import machine_secret
    from evaluators.tasks import get_task
    items = get_task("lm").downstream_suite(spec, machine_secret()).fingerprint
    return hashlib.sha256((spec.model_dump_json() + items).encode()).hexdigest()[:12]


def members(n: int, spec) -> list[tuple[str, str]]:
    """(id, source) of the pool: the three baselines, then random genomes of the rung's space."""
    from benchmarks.lm_discovery import lm_space
    from evaluators.baselines import lm_baselines
    found = [(name, source) for name, (_, source) in sorted(lm_baselines().items())]
    se.SPACE = lm_space(spec)
    for genome in se.random_draws(max(0, n - len(found)), seed=0):
        found.append((f"g-{hashlib.sha256(se.key(genome).encode()).hexdigest()[:10]}", se.render(se.canonical(genome))))
    return found[:n]


def grade_one(args: tuple[str, str, int]) -> dict | None:
    """One member trained at short and graded on the whole suite (None: it failed)."""
    from sandbox.process import ProcessSandbox
    from evaluators.harness import evaluate
    from wire.jobs import EvalJob, Limits
    name, source, scale = args
    job = EvalJob(job_id=f"pool-{name}", candidate_id=name, source=source, task=_spec(scale), fidelity="short",
                  limits=Limits(**LIMITS), seed=0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="suite-pool-") as tmp:
        result = evaluate(ProcessSandbox(), job, Path(tmp))
    if result.status == "sandbox_error":
        raise RuntimeError(f"the sandbox could not run a job: {result.message}")
    if not result.ok or result.items is None:
        print(f"  {name}: {result.status} {result.message[:120]}", flush=True)
        return None
    print(f"  {name}: bpb {result.metrics['bits_per_byte']:.3f}, suite {result.metrics['suite_score']:.3f} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return {"scores": result.items.scores, "correct": result.items.correct, "suite": result.items.suite,
            "bits_per_byte": result.metrics["bits_per_byte"]}


def build_pool(path: Path, models: int = MODELS, scale: int = SCALE, jobs: int = 2, cache: Path = CACHE) -> Path:
    """Train and grade the pool's members not cached yet, then write the pool file to `path`."""
    from evaluators.heldout import machine_secret
    from evaluators.tasks import get_task
    spec = _spec(scale)
    cached_path = cache / f"pool-{cache_key(spec)}.json"
    done: dict = json.loads(cached_path.read_text()) if cached_path.is_file() else {}
    todo = [(name, source, scale) for name, source in members(models, spec) if name not in done]
    print(f"suite pool: {models} members, {len(done)} cached, {len(todo)} to train ({jobs} at a time)", flush=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for (name, _, _), graded in zip(todo, pool.map(grade_one, todo)):
            done[name] = graded
            cached_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(done))
            os.replace(tmp, cached_path)
    kept = {name: g for name, g in done.items() if g is not None}
    whole = get_task("lm").downstream_suite(spec, machine_secret())
    fingerprints = {g["suite"] for g in kept.values()}
    if fingerprints != {whole.fingerprint}:
        raise RuntimeError(f"the cached pool was graded on suites {sorted(fingerprints)}, this host's is "
                           f"{whole.fingerprint}; remove {cached_path}")
    names = sorted(kept)
    item_tokens = np.array([len(set(item.rows)) * whole.rows.tokens.shape[1] for item in whole.items])
    from evaluators.suite import SCENARIOS
    np.savez(path, Y=np.array([kept[n]["scores"] for n in names]), C=np.array([kept[n]["correct"] for n in names]),
             scenarios=whole.scenario_of, scenario_names=np.array(SCENARIOS), models=np.array(names),
             item_tokens=item_tokens, bits_per_byte=np.array([kept[n]["bits_per_byte"] for n in names]))
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / "pool.npz"
    print(build_pool(out, models=int(sys.argv[2]) if len(sys.argv) > 2 else MODELS))


def measure_compute(anchor_items, scale: int = SCALE) -> dict:
    """Seconds (one thread, best of 2) the rung's transformer baseline spends scoring the whole suite, the anchor
    items, and training at short: what a short job's evaluation costs with and without anchors. In-process: the
    baseline is this repository's code."""
    import torch
    from evaluators import fidelities
    from evaluators.baselines import lm_baselines
    from evaluators.heldout import machine_secret
    from evaluators.tasks import get_task
    from evaluators.tasks.lm import log_probabilities
    torch.set_num_threads(1)
    task, spec = get_task("lm"), _spec(scale)
    whole = task.downstream_suite(spec, machine_secret())
    part, _ = whole.subset(anchor_items)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(lm_baselines()["lm_transformer"][1])
        module = fidelities.load_candidate(path)
    instance = spec.at("short")
    model = fidelities.build(module, instance, 0).eval()

    def seconds(suite) -> float:
        best = math.inf
        for _ in range(2):
            started = time.perf_counter()
            for name, rows in suite.inputs().items():
                log_probabilities(model, rows, torch.device("cpu"), int(name.removeprefix("suite_c")))
            best = min(best, time.perf_counter() - started)
        return best

    started = time.perf_counter()
    fidelities.train(task, instance, fidelities.build(module, instance, 0), spec.budgets["short"], 0,
                     torch.device("cpu"))
    return {"model": "lm_transformer", "train_short_seconds": time.perf_counter() - started,
            "whole_suite_seconds": seconds(whole), "anchor_seconds": seconds(part),
            "whole_suite_tokens": whole.forward_tokens(), "anchor_tokens": part.forward_tokens(),
            "anchor_items": len(part.items)}
