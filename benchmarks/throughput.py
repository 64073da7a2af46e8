"""How much work 1 and 2 workers do: a fixed job mix through the executor, and the loop end to end (issue 24).

    python benchmarks/throughput.py                     # parts 1-3, the full measurement (about 70 min on 2 quiet cores)
    python benchmarks/throughput.py --parts mix,promotion   # some parts (mix, loop, promotion)
    python benchmarks/throughput.py --ray [--ray-train-steps 250] [--ray-rounds 2]     # part 4 alone

1. A fixed job mix (`--parts mix`): `--candidates` candidates (the shipped baselines, then fixed
   genomes of the offline engine; mqar), each evaluated as the loop does, `check` then `short`
   of `--loop-steps` steps, and the first `--promoted` of them also at `full` (`--full-steps`
   steps, `loop.full_seeds` seeds, one after the other, as the loop's `train_seeds` does). The
   same mix runs at 1 and 2 workers through the executor a run uses (`archlab.backends
   .make_executor`: the local executor over the process sandbox, warm workers, `--threads-per-job`
   threads per job), one thread per worker taking the next candidate as soon as its last job
   ends (no round barrier: this measures what the executor can give, not the loop's
   scheduling); promoted candidates go first, so neither count ends on one long chain. One
   uncounted `check` per worker comes first; the clock starts after it and stops at the last
   result. Per count: candidates per hour and occupancy. The worker counts alternate within
   each of `--repeats` repeats (ABBA), and the ratio "2 workers / 1 worker" is taken per repeat:
   its geometric mean with a 95% Student-t interval over repeats.
2. The loop end to end (`--parts loop`): `archlab run` as `make run` gives it (`--task lm
   --rounds 3 --random-pool 3`, offline engine, process sandbox), at 1 and 2 workers, with the
   same seed, rounds and batch (`--loop-batch`, default 2, so both counts propose the same
   candidates; no budget) and `--threads-per-job` threads per job; `--loop-repeats` repeats,
   ABBA. Per run: the command's wall time, candidates (directories of the run), candidates per
   hour end to end (the command's wall time: what a user waits, start-up and summary included)
   and over the time the run was driven (from its `run_started`), and occupancy from the run's
   event log. The ratio per repeat, and its interval where there are at least 3 repeats. Target
   (issue 24), on the end-to-end figure: 2 workers >= 1.8x the candidates per hour of 1 worker
   on the 2-core machine.
3. A run with promotion to `full` (`--parts promotion`): the same loop at 2 workers on mqar
   (`--loop-steps` and `--full-steps`), `--promote` of the short rung trained at `full` with
   `loop.full_seeds` seeds; its occupancy and how many `full` jobs it ran. Target (issue 24):
   occupancy >= 0.95. (Occupancy over a 40-round run is `benchmarks/loop_orchestration.py`'s.)
4. `--ray` (alone): evaluations per hour of one fixed ~10 s job (`--ray-train-steps`) with 1, 2 and 4
   at a time through the local executor and through the Ray executor on a simulated two-node
   cluster (two raylets on this machine with custom resources node_a and node_b), the Ray
   executor's overhead per job over the local one, and that `executor.resources` pins workers
   to a node. Targets: Ray overhead <= 5% of the job; Ray's scaling within 10% of local's.
   Writes benchmarks/results/throughput_ray.json (throughput.json is left alone).

Occupancy is `archlab.occupancy`, the figure `archlab run` prints: mean jobs in flight ÷ workers
over the wall time (parts 2-3: a job from its `job_started` event to its `result`; part 1: the
benchmark's own clock around each job). Per-job start-up overhead is
`benchmarks/sandbox_overhead.py`'s. Timings on a shared machine move a lot: the load average at
start and end is recorded, and final figures need a quiet machine.
Writes benchmarks/results/throughput.json (every figure, raw times and commands included) and prints one summary line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from archlab.occupancy import of_events, of_spans  # noqa: E402
from evaluators.baselines import baseline_source  # noqa: E402
from evaluators.stats import MIN_SEEDS, mean_ci  # noqa: E402
from evaluators.tasks import get_task  # noqa: E402

TARGETS = {"loop_speedup_2_workers": 1.8, "occupancy": 0.95,
           # the executor's own ceiling on the same mix; the target is the loop's (above)
           "mix_speedup_2_workers": 1.8}
PARTS = ("mix", "loop", "promotion")


def interval(values: list[float]) -> dict:
    """Mean and 95% Student-t interval (`evaluators.stats.mean_ci`); the mean alone below `MIN_SEEDS` values."""
    if len(values) < MIN_SEEDS:
        return {"mean": statistics.mean(values), "n": len(values)}
    found = mean_ci(values)
    return {"mean": found.mean, "low": found.low, "high": found.high, "n": found.n}


def ratio_interval(ratios: list[float]) -> dict:
    """Geometric mean of per-repeat ratios with the 95% Student-t interval of their logarithms, exponentiated
    (the geometric mean alone below `MIN_SEEDS` repeats)."""
    logs = [math.log(r) for r in ratios]
    out = {"geometric_mean": math.exp(statistics.mean(logs)), "n": len(ratios), "per_repeat": ratios}
    if len(ratios) >= MIN_SEEDS:
        found = mean_ci(logs)
        out.update(low=math.exp(found.low), high=math.exp(found.high))
    return out


def verdict(found: dict, target: float) -> str:
    if "low" not in found:
        word = "met" if found["geometric_mean"] >= target else "missed"
        return f"{word} on the point estimate (no interval: {found['n']} repeat(s))"
    return "met" if found["low"] >= target else "missed" if found["high"] < target else \
        "not distinguishable from the target"


def abba(counts: list[int], repeat: int) -> list[int]:
    """The worker counts in repeat `repeat`: forward, then backward, so drift over time falls on every count."""
    return counts if repeat % 2 == 0 else counts[::-1]


# --- part 1: a fixed job mix through the executor -----------------------------------------------
def fixed_candidates(count: int) -> list[tuple[str, str]]:
    """(name, source) of the mix's candidates, the same at every worker count: the baselines, then fixed genomes."""
    from agents.offline.blocks import random_genomes, render
    from evaluators.baselines import NAMES
    found = [(name, baseline_source(name)) for name in NAMES]
    found += [(f"genome-{i}", render(g)) for i, g in enumerate(random_genomes(max(0, count - len(found)), seed=0))]
    return found[:count]


def job_mix(count: int, promoted: int, full_seeds: int) -> list[dict]:
    """Each candidate's jobs in order, as the loop runs them: `check`, `short`, and for the first `promoted`,
    `full` with seeds 0 .. full_seeds - 1."""
    mix = []
    for k, (name, source) in enumerate(fixed_candidates(count)):
        jobs = [("check", 0), ("short", 0)] + ([("full", s) for s in range(full_seeds)] if k < promoted else [])
        mix.append({"name": name, "source": source, "jobs": jobs})
    return mix


def run_settings(workers: int, threads: int):
    """The settings a run with `workers` workers would have (process sandbox; `threads` per job, 0: the machine's)."""
    from archlab.settings import Settings
    sandbox: dict = {"backend": "process"}
    if threads:
        sandbox["cpus"] = threads
    return Settings.model_validate({"executor": {"backend": "local", "workers": workers}, "sandbox": sandbox})


def mix_once(workers: int, mix: list[dict], spec, threads: int, tag: str) -> dict:
    """The whole mix through a fresh executor of `workers` workers; the clock runs from after one uncounted `check`
    per worker to the last result."""
    from concurrent.futures import ThreadPoolExecutor
    from archlab.backends import make_executor
    from archlab.sandboxes import make_sandbox
    from archlab.session import job_limits
    from evaluators.harness import evaluate
    from wire.jobs import EvalJob
    settings = run_settings(workers, threads)
    limits = {"check": job_limits(settings, settings.sandbox.check_seconds, 0),
              "train": job_limits(settings, settings.sandbox.train_seconds, 0)}
    executor = make_executor(settings, make_sandbox(settings))
    jobs: list[dict] = []
    try:
        executor.prestart(list(limits.values()))
        with tempfile.TemporaryDirectory(prefix="archlab-throughput-") as tmp:
            def run(name: str, source: str, fidelity: str, seed: int) -> dict:
                job = EvalJob.model_validate({"job_id": f"{tag}-{name}-{fidelity}-s{seed}", "candidate_id": name,
                                              "source": source, "task": spec, "fidelity": fidelity, "seed": seed,
                                              "limits": limits["check" if fidelity == "check" else "train"]})
                started = time.perf_counter()
                result = executor.run(job, Path(tmp) / job.job_id, evaluate)
                if result.status != "ok":
                    raise RuntimeError(f"{job.job_id}: {result.status} {result.message[:500]}")
                return {"candidate": name, "fidelity": fidelity, "seed": seed, "start": started,
                        "end": time.perf_counter()}

            def branch(candidate: dict) -> list[dict]:
                return [run(candidate["name"], candidate["source"], f, s) for f, s in candidate["jobs"]]

            with ThreadPoolExecutor(workers) as pool:   # one thread per worker: each takes the next candidate
                warm = baseline_source("softmax_attention")
                list(pool.map(lambda i: run(f"warmup{i}", warm, "check", 0), range(workers)))
                clock = time.perf_counter()
                for done in pool.map(branch, mix):
                    jobs += done
                wall = time.perf_counter() - clock
    finally:
        executor.close()
    busy = of_spans([(j["start"], j["end"]) for j in jobs], workers, clock, clock + wall)
    for j in jobs:
        j["start"], j["end"] = j["start"] - clock, j["end"] - clock
    return {"workers": workers, "wall_seconds": wall, "candidates": len(mix), "jobs": len(jobs),
            "candidates_per_hour": len(mix) / wall * 3600, "occupancy": busy.value,
            "no_job_seconds": busy.no_job_seconds, "job_seconds": jobs}


def mix_part(args, counts: list[int], full_seeds: int) -> dict:
    """Part 1: the same mix at every worker count, `args.repeats` times, counts in ABBA order."""
    mix = job_mix(args.candidates, args.promoted, full_seeds)
    spec = get_task("mqar").default_spec(short_steps=args.loop_steps, full_steps=args.full_steps)
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for workers in abba(counts, repeat):
            entry = mix_once(workers, mix, spec, args.threads_per_job, f"r{repeat}-w{workers}")
            runs.append({"repeat": repeat, **entry})
            print(f"  mix, repeat {repeat}, {workers} worker(s): {entry['wall_seconds']:.0f} s, "
                  f"{entry['candidates_per_hour']:.0f} candidates/h, occupancy {entry['occupancy']:.2f}", flush=True)
    rate = {w: [r["candidates_per_hour"] for r in runs if r["workers"] == w] for w in counts}
    out: dict = {"task": "mqar", "candidates": [c["name"] for c in mix],
                 "promoted": [c["name"] for c in mix[:args.promoted]], "full_seeds": full_seeds,
                 "short_steps": args.loop_steps, "full_steps": args.full_steps,
                 "jobs_per_mix": sum(len(c["jobs"]) for c in mix), "threads_per_job": args.threads_per_job or "machine",
                 "repeats": args.repeats,
                 "candidates_per_hour": {str(w): {"median": statistics.median(v), **interval(v)} for w, v in rate.items()},
                 "occupancy": {str(w): interval([r["occupancy"] for r in runs if r["workers"] == w]) for w in counts},
                 "speedup": {str(w): ratio_interval([a / b for a, b in zip(rate[w], rate[counts[0]])])
                             for w in counts[1:]},
                 "runs": runs}
    if "2" in out["speedup"]:
        out["target_2_workers"] = {"target": TARGETS["mix_speedup_2_workers"],
                                   "verdict": verdict(out["speedup"]["2"], TARGETS["mix_speedup_2_workers"])}
    return out


# --- parts 2 and 3: the loop end to end ---------------------------------------------------------
def loop_once(workers: int, arguments: list[str], threads: int, task_options: str | None) -> dict:
    """One `archlab run` in a subprocess with `workers` workers: wall time, candidates, occupancy from its log."""
    from agents.events import read_events
    env = dict(os.environ)
    if threads:
        env["ARCHLAB_SANDBOX__CPUS"] = str(threads)
    if task_options:
        env["ARCHLAB_TASK_OPTIONS"] = task_options
    with tempfile.TemporaryDirectory(prefix="archlab-throughput-loop-") as runs:
        command = [sys.executable, "-m", "archlab.cli", "run", *arguments, "--workers", str(workers),
                   "--llm", "offline", "--sandbox", "process", "--runs-dir", runs]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=6 * 3600)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"archlab run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        run_dir = next(p for p in Path(runs).iterdir() if (p / "run.json").is_file())
        events = read_events(run_dir / "events.jsonl")[0]
        candidates = sorted(p.parent.name for p in run_dir.glob("candidates/*/candidate.json"))
    busy = of_events(events, workers)
    printed = next((line for line in done.stdout.splitlines() if line.startswith("worker occupancy")), "")
    fidelities: dict[str, int] = {}
    for e in events:
        if e.type == "job_started":
            fidelities[e.payload["fidelity"]] = fidelities.get(e.payload["fidelity"], 0) + 1
    return {"workers": workers, "command": " ".join(command[1:-2]) + " --runs-dir DIR",
            "env": {k: env[k] for k in ("ARCHLAB_SANDBOX__CPUS", "ARCHLAB_TASK_OPTIONS") if k in env},
            "wall_seconds": wall, "run_seconds": busy.wall_seconds, "candidates": len(candidates),
            "candidate_ids": candidates, "candidates_per_hour": len(candidates) / wall * 3600,
            # over the time the run was driven (from run_started), without the command's start-up and summary
            "candidates_per_hour_driven": len(candidates) / busy.wall_seconds * 3600 if busy.wall_seconds else 0.0,
            "occupancy": busy.value, "no_job_seconds": busy.no_job_seconds, "jobs": busy.jobs,
            "jobs_by_fidelity": fidelities, "printed": printed}


def loop_arguments(args) -> list[str]:
    found = ["--task", args.loop_task, "--rounds", str(args.loop_rounds), "--random-pool", str(args.random_pool),
             "--seed", "0"]
    return found + (["--batch", str(args.loop_batch)] if args.loop_batch else [])


def loop_part(args, counts: list[int]) -> dict:
    """Part 2: `make run`'s workload at every worker count, `args.loop_repeats` times, ABBA."""
    runs: list[dict] = []
    for repeat in range(args.loop_repeats):
        for workers in abba(counts, repeat):
            entry = loop_once(workers, loop_arguments(args), args.threads_per_job, args.loop_task_options)
            runs.append({"repeat": repeat, **entry})
            print(f"  loop, repeat {repeat}, {workers} worker(s): {entry['candidates']} candidates in "
                  f"{entry['wall_seconds']:.0f} s, {entry['candidates_per_hour']:.0f}/h, occupancy "
                  f"{entry['occupancy']:.2f}", flush=True)
    rate = {w: [r["candidates_per_hour"] for r in runs if r["workers"] == w] for w in counts}
    driven = {w: [r["candidates_per_hour_driven"] for r in runs if r["workers"] == w] for w in counts}
    same = len({tuple(r["candidate_ids"]) for r in runs}) == 1
    out: dict = {"workload": "make run: " + " ".join(loop_arguments(args)), "repeats": args.loop_repeats,
                 "threads_per_job": args.threads_per_job or "machine", "same_candidates_at_every_count": same,
                 "candidates_per_hour": {str(w): {"median": statistics.median(v), **interval(v)}
                                         for w, v in rate.items()},
                 "occupancy": {str(w): interval([r["occupancy"] for r in runs if r["workers"] == w]) for w in counts},
                 "speedup": {str(w): ratio_interval([a / b for a, b in zip(rate[w], rate[counts[0]])])
                             for w in counts[1:]},
                 "speedup_driven": {str(w): ratio_interval([a / b for a, b in zip(driven[w], driven[counts[0]])])
                                    for w in counts[1:]},
                 "runs": runs}
    if "2" in out["speedup"]:
        out["target_2_workers"] = {"target": TARGETS["loop_speedup_2_workers"],
                                   "verdict": verdict(out["speedup"]["2"], TARGETS["loop_speedup_2_workers"])}
    return out


def promotion_part(args, full_seeds: int) -> dict:
    """Part 3: one run at 2 workers where the top `args.promote` of the short rung trains at `full`."""
    options = json.loads(args.loop_task_options) if args.loop_task_options and args.loop_task == "mqar" else {}
    options = json.dumps({**options, "short_steps": args.loop_steps, "full_steps": args.full_steps})
    arguments = ["--task", "mqar", "--rounds", str(args.promotion_rounds), "--random-pool", str(args.random_pool),
                 "--seed", "0", "--promote", str(args.promote)]
    entry = loop_once(2, arguments, args.threads_per_job, options)
    print(f"  promotion run, 2 workers: {entry['jobs_by_fidelity'].get('full', 0)} full jobs, occupancy "
          f"{entry['occupancy']:.2f}", flush=True)
    target = TARGETS["occupancy"]
    promoted = entry["jobs_by_fidelity"].get("full", 0) > 0
    return {**entry, "promote": args.promote, "full_seeds": full_seeds, "target_occupancy": target,
            "verdict": ("met" if entry["occupancy"] >= target else "missed") if promoted else
            "not tested: no candidate reached full (more --promotion-rounds or a larger --promote)",
            "note": "one run: no interval"}


RAY_TARGETS = {"ray_overhead_fraction_of_10s_job": 0.05, "scaling_vs_local_within": 0.10}


def executor_throughput(make, job_for, ready, concurrency: int, rounds: int) -> dict:
    """`rounds` × `concurrency` copies of one job through an executor, `concurrency` at a time, after one
    uncounted trivial job per worker and with every worker's replacement ready (`ready(executor)`) before the
    clock starts: evaluations per hour, and each job's wall time and what the executor reported. At
    concurrency 1 also `latency_seconds`: jobs one by one, each started with its worker ready (off the clock)."""
    from concurrent.futures import ThreadPoolExecutor
    from evaluators.harness import evaluate
    executor = make(concurrency)
    try:
        with tempfile.TemporaryDirectory(prefix="archlab-throughput-ray-") as tmp, \
                ThreadPoolExecutor(concurrency) as pool:
            def one(job) -> tuple[float, object]:
                started = time.perf_counter()
                result = executor.run(job, Path(tmp) / job.job_id, evaluate)
                if result.status != "ok":
                    raise RuntimeError(f"{job.job_id}: {result.status} {result.message[:500]}")
                return time.perf_counter() - started, result
            list(pool.map(one, [job_for("check", f"warm{concurrency}-{i}") for i in range(concurrency)]))
            ready(executor)
            started = time.perf_counter()
            done = list(pool.map(one, [job_for("short", f"c{concurrency}-{i}") for i in range(rounds * concurrency)]))
            wall = time.perf_counter() - started
            latency = []
            for i in range(rounds if concurrency == 1 else 0):
                ready(executor)
                latency.append(one(job_for("short", f"latency-{i}")))
    finally:
        executor.close()
    results = [r for _, r in done + latency]
    return {"concurrency": concurrency, "jobs": len(done), "wall_seconds": wall,
            "latency_seconds": [t for t, _ in latency],
            "latency_sandbox_seconds": [r.timings.get("wall_seconds", 0.0) for _, r in latency],
            "latency_ray_transport_seconds": [r.timings["ray_seconds"] - r.timings.get("wall_seconds", 0.0)
                                              for _, r in latency if "ray_seconds" in r.timings],
            "evaluations_per_hour": len(done) / wall * 3600,
            "job_seconds": [t for t, _ in done],
            "sandbox_seconds": [r.timings.get("wall_seconds", 0.0) for r in results],
            "ray_transport_seconds": [r.timings["ray_seconds"] - r.timings.get("wall_seconds", 0.0)
                                      for r in results if "ray_seconds" in r.timings],
            "nodes": sorted(str(r.environment.get("ray_node_id", "local"))[:8] for r in results)}


def ray_benchmark(train_steps: int, rounds: int, counts: tuple[int, ...]) -> dict:
    """Part 4 (`--ray`): the same fixed job on the local executor and on a simulated two-node Ray cluster."""
    import ray
    from ray.cluster_utils import Cluster
    from archlab.backends import capacity, make_executor
    from archlab.executors.capacity import plan_capacity
    from archlab.executors.local import LocalExecutor
    from archlab.settings import Settings
    from benchmarks.sandbox_overhead import in_process
    from sandbox.process import ProcessSandbox
    from wire.jobs import EvalJob, Limits

    task = get_task("mqar")
    spec = task.default_spec(short_steps=train_steps)
    source = baseline_source("softmax_attention")
    limits = Limits(wall_seconds=600, memory_mb=2048, cpus=1)

    def job_for(fidelity: str, job_id: str) -> EvalJob:
        return EvalJob(job_id=job_id, candidate_id="bench", source=source, task=spec, fidelity=fidelity,
                       limits=limits)

    in_proc = [in_process(spec, source, "short") for _ in range(2)]
    # two Ray nodes on this one machine, each a raylet of its own with its own custom resource: the closest
    # this machine comes to a cluster (the nodes share its 2 cores, as 4 local workers do)
    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"node_a": 2},
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=2, resources={"node_b": 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="warning")
    cluster_seconds = time.perf_counter() - started
    try:
        def ray_settings(workers: int, **executor) -> Settings:
            return Settings(executor={"backend": "ray", "address": cluster.address, "workers": workers, **executor},
                            sandbox={"cpus": 1, "memory_mb": limits.memory_mb})

        def make_ray(workers: int):
            settings = ray_settings(workers)
            return make_executor(settings, sandbox=None)

        def make_local(workers: int):
            return LocalExecutor(ProcessSandbox(), plan_capacity(workers, 1, 0, limits.memory_mb), warm=True)

        def ready(executor) -> None:
            if isinstance(executor, LocalExecutor):
                for slot in executor._slots:
                    for sandbox in slot.sandboxes.values():
                        sandbox.wait_ready(limits, 300)
            else:
                executor.wait_ready(limits, 300)

        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        for count in counts:                            # interleaved, so other load falls on both alike
            for name, make in (("local", make_local), ("ray", make_ray)):
                runs[name].append(executor_throughput(make, job_for, ready, count, rounds))
        pinned = ray_settings(2, resources={"node_b": 1})      # executor.resources: both workers on node_b
        node_b = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("node_b"))
        executor = make_executor(pinned, sandbox=None)
        try:
            placed = {i["node_id"] for i in executor.identities()}
        finally:
            executor.close()
        pinned_capacity = capacity(ray_settings(None, resources={"node_b": 1}))
    finally:
        ray.shutdown()
        cluster.shutdown()

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    one = {name: next(r for r in entries if r["concurrency"] == 1) for name, entries in runs.items()}
    job_seconds = median(one["local"]["latency_sandbox_seconds"])
    overhead = median(one["ray"]["latency_seconds"]) - median(one["local"]["latency_seconds"])
    scaling = {name: {str(r["concurrency"]): r["evaluations_per_hour"] / one[name]["evaluations_per_hour"]
                      for r in entries} for name, entries in runs.items()}
    return {
        "what": "one fixed job (mqar short, softmax_attention baseline, 1 thread) through the local executor and "
                "the Ray executor, 1, 2 and 4 at a time; Ray is a simulated two-node cluster on this machine "
                "(ray.cluster_utils.Cluster: a head node declaring node_a and a second raylet declaring node_b, "
                "2 CPUs each, on the same 2 cores), not a real multi-machine cluster",
        "targets": RAY_TARGETS, "train_steps": train_steps, "rounds_per_count": rounds,
        "in_process_seconds": in_proc, "cluster_start_seconds": cluster_seconds,
        "job_seconds_in_sandbox": job_seconds,
        "per_job_seconds_at_1": {name: median(e["latency_seconds"]) for name, e in one.items()},
        "ray_overhead_seconds": overhead, "ray_overhead_fraction": overhead / job_seconds,
        # what the Ray executor adds around the sandbox's own time: shipping, the actor call, landing out/
        "ray_transport_seconds_median": median(one["ray"]["latency_ray_transport_seconds"]),
        "scaling": scaling,
        "scaling_gap": {c: scaling["ray"][c] / scaling["local"][c] - 1 for c in scaling["ray"]},
        "pinned_to_node_b": {"placed_on": sorted(placed), "node_b": node_b, "all_on_node_b": placed == {node_b},
                             "workers_the_resource_allows": pinned_capacity.workers},
        "runs": runs,
    }


def ray_main(args) -> None:
    counts = tuple(c for c in (1, 2, 4) if c <= args.ray_max)
    report = {"machine": {"cores": os.cpu_count(), "torch": torch.__version__,
                          "load_average_1min_start": os.getloadavg()[0]},
              **ray_benchmark(args.ray_train_steps, args.ray_rounds, counts)}
    report["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    args.ray_out.parent.mkdir(parents=True, exist_ok=True)
    args.ray_out.write_text(json.dumps(report, indent=1))
    rates = "; ".join(f"{name} " + ", ".join(f"{r['concurrency']}: {r['evaluations_per_hour']:.0f}/h"
                                             for r in report["runs"][name]) for name in ("local", "ray"))
    print(f"throughput (ray) — job {report['job_seconds_in_sandbox']:.1f} s; Ray overhead "
          f"{report['ray_overhead_seconds']:+.2f} s ({report['ray_overhead_fraction']:+.1%}), transport "
          f"{report['ray_transport_seconds_median']:.3f} s; {rates} -> {args.ray_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which of {', '.join(PARTS)} to run")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, the first the reference")
    parser.add_argument("--threads-per-job", type=int, default=1,
                        help="threads per job at every count, so the ratio measures workers, not torch's threads "
                             "(0: the machine's default, cores / workers)")
    parser.add_argument("--repeats", type=int, default=4, help="part 1: repeats of every worker count (>= 3)")
    parser.add_argument("--candidates", type=int, default=8, help="part 1: candidates in the mix")
    parser.add_argument("--promoted", type=int, default=2, help="part 1: of them, trained at full too")
    parser.add_argument("--loop-steps", type=int, default=150, help="parts 1 and 3: short steps (mqar)")
    parser.add_argument("--full-steps", type=int, default=300, help="parts 1 and 3: full steps (mqar)")
    parser.add_argument("--full-seeds", type=int, default=None, help="seeds per full job (default loop.full_seeds)")
    parser.add_argument("--loop-repeats", type=int, default=4,
                        help="part 2: repeats of every worker count (an interval needs 3; ABBA balances at even)")
    parser.add_argument("--loop-task", default="lm", help="part 2: the task (make run's: lm)")
    parser.add_argument("--loop-rounds", type=int, default=3, help="part 2: rounds (make run's: 3)")
    parser.add_argument("--random-pool", type=int, default=3, help="parts 2 and 3: random references (make run's: 3)")
    parser.add_argument("--loop-batch", type=int, default=2,
                        help="part 2: candidates per round at every count (0: the run's default, = workers)")
    parser.add_argument("--loop-task-options", default=None,
                        help="part 2: task options as JSON (ARCHLAB_TASK_OPTIONS; default: make run's, none)")
    parser.add_argument("--promotion-rounds", type=int, default=3, help="part 3: rounds")
    parser.add_argument("--promote", type=float, default=0.5, help="part 3: share of the short rung trained at full")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    parser.add_argument("--ray", action="store_true", help="part 4 only: local vs Ray executor, into --ray-out")
    parser.add_argument("--ray-train-steps", type=int, default=250, help="steps of part 4's ~10 s job")
    parser.add_argument("--ray-rounds", type=int, default=2, help="part 4: jobs per worker measured at each count")
    parser.add_argument("--ray-max", type=int, default=4, help="part 4: largest number of concurrent jobs")
    parser.add_argument("--ray-out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput_ray.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.ray:
        ray_main(args)
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    if "mix" in parts and args.repeats < MIN_SEEDS:
        parser.error(f"--repeats must be at least {MIN_SEEDS}: fewer give no interval")
    counts = sorted({int(w) for w in args.workers.split(",")})
    from archlab.executors.capacity import machine_cores
    from archlab.settings import Settings
    from sandbox.gpu import detect_gpus
    full_seeds = args.full_seeds or Settings().loop.full_seeds
    started = time.perf_counter()
    report: dict = {"machine": {"cores": machine_cores(), "gpus": len(detect_gpus()), "torch": torch.__version__,
                                "load_average_1min_start": os.getloadavg()[0]}, "targets": TARGETS,
                    "command": " ".join(["python", "benchmarks/throughput.py", *sys.argv[1:]]), "workers": counts}
    if "mix" in parts:
        report["mix"] = mix_part(args, counts, full_seeds)
    if "loop" in parts:
        report["loop"] = loop_part(args, counts)
    if "promotion" in parts:
        report["promotion"] = promotion_part(args, full_seeds)
    report["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    report["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("throughput — " + "; ".join(summary(report)) + f" -> {args.out}")


def speedup_text(found: dict) -> str:
    s = found["speedup"].get("2")
    if s is None:
        return ""
    bounds = f" [{s['low']:.2f}, {s['high']:.2f}]" if "low" in s else \
        " (per repeat " + ", ".join(f"{r:.2f}" for r in s["per_repeat"]) + ")"
    return f"2 workers {s['geometric_mean']:.2f}x{bounds}, target >= {found['target_2_workers']['target']}x " \
           f"{found['target_2_workers']['verdict']}"


def summary(report: dict) -> list[str]:
    parts = []
    for name, what in (("mix", "fixed mix"), ("loop", "make run")):
        found = report.get(name)
        if found is None:
            continue
        rate, occ = found["candidates_per_hour"], found["occupancy"]
        counts = list(rate)
        parts.append(f"{what}: " + ", ".join(f"{w} worker(s) {rate[w]['median']:.0f} candidates/h (occupancy "
                                               f"{occ[w]['mean']:.2f})" for w in counts)
                     + (f", {speedup_text(found)}" if speedup_text(found) else "")
                     + (f" (over the driven time {found['speedup_driven']['2']['geometric_mean']:.2f}x)"
                        if "2" in found.get("speedup_driven", {}) else ""))
    if "promotion" in report:
        p = report["promotion"]
        parts.append(f"promotion run: {p['jobs_by_fidelity'].get('full', 0)} full jobs, occupancy "
                     f"{p['occupancy']:.2f} (target >= {p['target_occupancy']}: {p['verdict']})")
    return parts


if __name__ == "__main__":
    main()
