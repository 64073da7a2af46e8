"""How much of the machine a run uses: per-job overhead, and candidates per second with 1 and 2 workers.

    python benchmarks/throughput.py [--repeats 5] [--train-steps 250] [--candidates 8] [--loop-steps 150]
    python benchmarks/throughput.py --workers-only [--repeats 4]          # part 2 alone
    python benchmarks/throughput.py --make-run                           # also part 3 (one run, ~5 min)
    python benchmarks/throughput.py --ray [--ray-train-steps 250] [--ray-rounds 2]

1. Per-job overhead, cold and warm, in the process backend and (where an engine runs) the
   docker backend, for a trivial job (`check` of a tiny model) and a `short` job of
   `--train-steps` steps, against the same work in-process. Modes are interleaved within each
   repeat; the overhead is the mean of the per-repeat differences with its 95% interval.
   Warm: the job goes to a `sandbox.warm.WarmSandbox` whose worker was started ahead of time and
   is ready (as in a run, where the replacement worker starts while the previous job runs).
   Targets on a 2-core machine: warm overhead <= 0.3 s (process) and <= 0.5 s (docker).
2. Candidates per second with 1 and 2 workers (and more where the machine has the cores): one
   fixed set of `--candidates` candidates (the shipped baselines and fixed genomes of the offline
   engine, mqar), each evaluated as the loop does (`check`, then `short` of `--loop-steps`
   steps), through the local executor (`archlab.executors.local.LocalExecutor`, process
   sandbox, one thread per job), warm and cold. The same set runs at every worker count, the
   counts alternate within each of `--repeats` repeats (ABBA order, so drift falls on both), and
   the ratio "2 workers / 1 worker" is taken per repeat: its geometric mean with a 95% Student-t
   interval over repeats. Target: 2 workers >= 1.7x the candidates per second of 1.
3. `--make-run`: `make run` as the README gives it (3 rounds of 2 candidates, 3 random
   references), its wall time per candidate, against the figure measured before warm workers
   and batched rounds (324 s for 12 candidates, issue 11). One run against a historical figure:
   no interval. Target: >= 1.5x faster per candidate.
4. `--ray` (alone): evaluations per hour of one fixed ~10 s job (`--ray-train-steps`) with 1, 2 and 4
   at a time through the local executor and through the Ray executor on a simulated two-node
   cluster (two raylets on this machine with custom resources node_a and node_b), the Ray
   executor's overhead per job over the local one, and that `executor.resources` pins workers
   to a node. Targets: Ray overhead <= 5% of the job; Ray's scaling within 10% of local's.
   Writes benchmarks/results/throughput_ray.json (throughput.json is left alone).
Writes benchmarks/results/throughput.json (every figure, raw times included) and prints one summary line.
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

from benchmarks.sandbox_overhead import in_process, in_sandbox  # noqa: E402
from evaluators.baselines import baseline_source  # noqa: E402
from evaluators.stats import MIN_SEEDS, mean_ci  # noqa: E402
from evaluators.tasks import get_task  # noqa: E402

BEFORE_MAKE_RUN = {"seconds": 324.0, "candidates": 12, "what": "3 baselines, 3 random references, 6 proposals; "
                   "one candidate at a time, a cold interpreter per job (issue 11, idle 2-core machine)"}
TARGETS = {"warm_overhead_seconds": {"process": 0.3, "docker": 0.5}, "speedup_2_workers": 1.7,
           "make_run_speedup_per_candidate": 1.5}


def backends() -> dict:
    from sandbox.process import ProcessSandbox
    found = {"process": ProcessSandbox()}
    try:
        from sandbox.docker_backend import DockerSandbox
        found["docker"] = DockerSandbox.connect()
    except Exception as exc:  # noqa: BLE001 - report, do not fail, where no engine is
        print(f"docker unavailable: {exc}", file=sys.stderr)
    return found


def overhead(repeats: int, train_steps: int) -> dict:
    from sandbox.warm import WarmSandbox
    task = get_task("mqar")
    source = baseline_source("softmax_attention")
    specs = {"trivial": (task.default_spec(seq_len=32, num_pairs=4, num_queries=4), "check", repeats),
             "short": (task.default_spec(short_steps=train_steps), "short", max(1, (repeats + 1) // 2))}
    modes = {"in_process": None}
    for name, box in backends().items():
        modes[f"{name}_cold"] = box
        modes[f"{name}_warm"] = WarmSandbox(box)
    report: dict = {"median_seconds": {}, "overhead_seconds": {}, "overhead_fraction": {}, "raw_seconds": {}}
    n = 0
    for kind, (spec, fidelity, count) in specs.items():
        times: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(count + 1):                      # the first round warms caches and images; not counted
            for mode, box in modes.items():             # interleaved, so other load falls on every mode alike
                if box is None:
                    seconds = in_process(spec, source, fidelity)
                else:                                   # a warm worker is made ready off the clock
                    n += 1
                    seconds = in_sandbox(box, spec, source, fidelity, n, 1, mode)
                if i:
                    times[mode].append(seconds)
        medians = {m: statistics.median(v) for m, v in times.items()}
        base = medians.pop("in_process")
        report["median_seconds"][kind] = {"in_process": base, **medians}
        report["overhead_seconds"][kind] = {m: v - base for m, v in medians.items()}
        report["overhead_fraction"][kind] = {m: v / base - 1 for m, v in medians.items()}
        if count >= MIN_SEEDS:                          # the repeats are paired: each mode ran beside in-process
            report.setdefault("overhead_interval_seconds", {})[kind] = {
                m: interval([t - b for t, b in zip(times[m], times["in_process"])]) for m in medians}
        report["raw_seconds"][kind] = times
    for mode, box in modes.items():
        if hasattr(box, "close"):
            box.close()
    return report


def interval(values: list[float]) -> dict:
    """Mean and 95% Student-t interval (`evaluators.stats.mean_ci`)."""
    found = mean_ci(values)
    return {"mean": found.mean, "low": found.low, "high": found.high, "n": found.n}


def ratio_interval(ratios: list[float]) -> dict:
    """Geometric mean of per-repeat ratios with the 95% Student-t interval of their logarithms, exponentiated."""
    found = mean_ci([math.log(r) for r in ratios])
    return {"geometric_mean": math.exp(found.mean), "low": math.exp(found.low), "high": math.exp(found.high),
            "n": found.n, "per_repeat": ratios}


def fixed_candidates(count: int) -> list[tuple[str, str]]:
    """(name, source) of part 2's candidates, the same at every worker count: the baselines, then fixed genomes."""
    from agents.offline.blocks import random_genomes, render
    from evaluators.baselines import NAMES
    found = [(name, baseline_source(name)) for name in NAMES]
    found += [(f"genome-{i}", render(g)) for i, g in enumerate(random_genomes(max(0, count - len(found)), seed=0))]
    return found[:count]


def candidates_per_second(box, workers: int, warm: bool, candidates: list[tuple[str, str]], spec, tag: str) -> dict:
    """Every candidate through a fresh local executor of `workers` slots (`check`, then `short`), `workers` at a
    time; the clock starts once each slot's first worker is ready (warm) and stops when the last result is in."""
    from concurrent.futures import ThreadPoolExecutor
    from archlab.executors.capacity import plan_capacity
    from archlab.executors.local import LocalExecutor
    from evaluators.harness import evaluate
    from wire.jobs import EvalJob, Limits
    limits = Limits(wall_seconds=600, memory_mb=2048, cpus=1)
    executor = LocalExecutor(box, plan_capacity(workers, 1, 0, limits.memory_mb), warm=warm)
    try:
        executor.prestart([limits])
        for slot in executor._slots if warm else ():
            for sandbox in slot.sandboxes.values():
                if not sandbox.wait_ready(limits, 300):
                    raise RuntimeError("a warm worker did not get ready in 300 s")
        with tempfile.TemporaryDirectory(prefix="archlab-throughput-") as tmp:
            def one(candidate: tuple[str, str]) -> list[float]:
                name, source = candidate
                seconds = []
                for fidelity in ("check", "short"):
                    job = EvalJob(job_id=f"{tag}-{name}-{fidelity}", candidate_id=name, source=source, task=spec,
                                  fidelity=fidelity, limits=limits)
                    started = time.perf_counter()
                    result = executor.run(job, Path(tmp) / job.job_id, evaluate)
                    if result.status != "ok":
                        raise RuntimeError(f"{job.job_id}: {result.status} {result.message[:500]}")
                    seconds.append(time.perf_counter() - started)
                return seconds

            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(one, candidates))
            wall = time.perf_counter() - started
    finally:
        executor.close()
    return {"workers": workers, "warm": warm, "wall_seconds": wall, "candidates": len(candidates),
            "candidates_per_second": len(candidates) / wall,
            "job_seconds": {name: seconds for (name, _), seconds in zip(candidates, done)}}


def scaling(repeats: int, count: int, steps: int, counts: list[int], modes: tuple[bool, ...]) -> dict:
    """Part 2: the same candidates at every worker count, `repeats` times, counts in ABBA order."""
    from sandbox.process import ProcessSandbox
    box = ProcessSandbox()
    candidates = fixed_candidates(count)
    spec = get_task("mqar").default_spec(short_steps=steps)
    runs: list[dict] = []
    for repeat in range(repeats):
        order = counts if repeat % 2 == 0 else counts[::-1]
        for warm in modes:
            for workers in order:
                entry = candidates_per_second(box, workers, warm, candidates, spec, f"r{repeat}-w{workers}-{warm}")
                runs.append({"repeat": repeat, **entry})
                print(f"  repeat {repeat} {'warm' if warm else 'cold'} {workers} worker(s): "
                      f"{entry['candidates_per_second']:.3f} candidates/s", flush=True)
    out: dict = {"candidates": [name for name, _ in candidates], "short_steps": steps, "repeats": repeats,
                 "task": "mqar", "threads_per_job": 1, "runs": runs}
    for warm in modes:
        mode = "warm" if warm else "cold"
        rate = {w: [r["candidates_per_second"] for r in runs if r["warm"] == warm and r["workers"] == w]
                for w in counts}
        out[mode] = {"candidates_per_second": {str(w): {"median": statistics.median(v), **interval(v)}
                                               for w, v in rate.items()},
                     "speedup": {str(w): ratio_interval([a / b for a, b in zip(rate[w], rate[counts[0]])])
                                 for w in counts[1:]}}
    target = TARGETS["speedup_2_workers"]
    if "2" in out.get("warm", {}).get("speedup", {}):
        found = out["warm"]["speedup"]["2"]
        out["target_2_workers"] = {"target": target, "verdict": "met" if found["low"] >= target else
                                   "missed" if found["high"] < target else "not distinguishable from the target"}
    return out


def make_run(runs_dir: Path) -> dict:
    """Part 3: one `archlab run` as `make run` gives it, in a subprocess; its wall time per candidate."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "archlab.cli", "run", "--runs-dir", str(runs_dir), "--task", "mqar",
               "--rounds", "3", "--random-pool", "3"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"archlab run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    run_dir = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    candidates = len({p.parent.name for p in run_dir.glob("candidates/*/candidate.json")})
    per_now = wall / candidates
    per_before = BEFORE_MAKE_RUN["seconds"] / BEFORE_MAKE_RUN["candidates"]
    return {"after": {"wall_seconds": wall, "candidates": candidates}, "before": BEFORE_MAKE_RUN,
            "seconds_per_candidate": {"before": per_before, "after": per_now},
            "speedup_per_candidate": per_before / per_now, "note": "one run against a historical figure: no interval"}


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
    parser.add_argument("--repeats", type=int, default=5, help="part 1: repeats per mode")
    parser.add_argument("--train-steps", type=int, default=250, help="steps of the short job in part 1")
    parser.add_argument("--scaling-repeats", type=int, default=4, help="part 2: repeats of every worker count (>= 3)")
    parser.add_argument("--candidates", type=int, default=8, help="part 2: candidates in the fixed set")
    parser.add_argument("--loop-steps", type=int, default=150, help="part 2: short steps of each candidate")
    parser.add_argument("--max-workers", type=int, default=None, help="largest worker count in part 2 (default: cores)")
    parser.add_argument("--cold", action=argparse.BooleanOptionalAction, default=True,
                        help="part 2: also measure cold workers")
    parser.add_argument("--workers-only", action="store_true", help="part 2 only")
    parser.add_argument("--make-run", action="store_true", help="also part 3 (one make-run-sized run, ~5 min)")
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
    if args.scaling_repeats < MIN_SEEDS:
        parser.error(f"--scaling-repeats must be at least {MIN_SEEDS}: fewer give no interval")
    from archlab.executors.capacity import machine_cores
    from sandbox.gpu import detect_gpus
    cores, gpus = machine_cores(), detect_gpus()
    started = time.perf_counter()
    report: dict = {"machine": {"cores": cores, "gpus": len(gpus), "torch": torch.__version__,
                                "load_average_1min_start": os.getloadavg()[0]}, "targets": TARGETS,
                    "command": " ".join(["python", "benchmarks/throughput.py", *sys.argv[1:]])}
    if not args.workers_only:
        report["per_job"] = overhead(args.repeats, args.train_steps)
    top = args.max_workers or max(2, cores)
    counts = sorted({1, 2, *(w for w in (4, 8, 16) if w <= top)})
    report["workers"] = scaling(args.scaling_repeats, args.candidates, args.loop_steps, counts,
                                (True, False) if args.cold else (True,))
    if args.make_run:
        with tempfile.TemporaryDirectory(prefix="archlab-throughput-") as tmp:
            report["make_run"] = make_run(Path(tmp))
    report["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    report["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("throughput — " + "; ".join(summary(report)) + f" -> {args.out}")


def summary(report: dict) -> list[str]:
    parts = []
    over = report["per_job"]["overhead_seconds"]["trivial"] if "per_job" in report else {}
    parts += [f"warm {m.split('_')[0]} +{v:.2f} s" for m, v in over.items() if m.endswith("_warm")]
    parts += [f"cold {m.split('_')[0]} +{v:.2f} s" for m, v in over.items() if m.endswith("_cold")]
    for mode in ("warm", "cold"):
        found = report["workers"].get(mode)
        if found and "2" in found["speedup"]:
            rate = found["candidates_per_second"]
            s2 = found["speedup"]["2"]
            parts.append(f"{mode}: {rate['1']['median']:.3f} -> {rate['2']['median']:.3f} candidates/s, 2 workers "
                         f"{s2['geometric_mean']:.2f}x [{s2['low']:.2f}, {s2['high']:.2f}]")
    if "target_2_workers" in report["workers"]:
        parts.append(f"target >= {TARGETS['speedup_2_workers']}x: {report['workers']['target_2_workers']['verdict']}")
    if "make_run" in report:
        m = report["make_run"]
        parts.append(f"make run {m['after']['wall_seconds']:.0f} s for {m['after']['candidates']} candidates "
                     f"({m['speedup_per_candidate']:.2f}x per candidate vs before, one run)")
    return parts


if __name__ == "__main__":
    main()
