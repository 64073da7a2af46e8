"""How much of the machine a run uses: per-job overhead, evaluations per hour, and `make run` wall time.

    python benchmarks/throughput.py [--repeats 5] [--train-steps 250] [--loop-steps 150] [--skip-make-run]

1. Per-job overhead, cold and warm, in the process backend and (where an engine runs) the
   docker backend, for a trivial job (`check` of a tiny model) and a `short` job of
   `--train-steps` steps, against the same work in-process. Warm: the job goes to a
   `sandbox.warm.WarmSandbox` whose worker was started ahead of time and is ready (as in a
   run, where the replacement worker starts while the previous job runs). Targets on a
   2-core machine: warm overhead <= 0.3 s (process) and <= 0.5 s (docker).
2. Evaluations per hour of a fixed 2-round loop (`archlab run --rounds 2`, no random pool,
   one thread per job) with 1 worker (1 candidate per round) and 2 workers (2 per round),
   and more where the machine has more cores or GPUs: sandbox jobs finished per hour of
   wall time. Target: 2 workers >= 1.7x 1 worker.
3. `make run` as the README gives it (3 rounds of 2 candidates, 3 random references), its wall
   time and how many candidates it evaluated, against the figure measured before warm workers
   and batched rounds (324 s for 3 baselines, 3 random references and 6 proposals), per
   candidate. Target: >= 1.5x faster per candidate.
Writes benchmarks/results/throughput.json and prints one summary line.
"""
from __future__ import annotations

import argparse
import json
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
        report["raw_seconds"][kind] = times
    for mode, box in modes.items():
        if hasattr(box, "close"):
            box.close()
    return report


def loop_run(workers: int, steps: int, runs_dir: Path, args: tuple[str, ...] = (), one_thread: bool = True,
             warm: bool = True) -> dict:
    """One `archlab run` in a subprocess; its wall time and what it evaluated, read from its log."""
    env = {**os.environ, **({"ARCHLAB_SANDBOX__CPUS": "1"} if one_thread else {}),
           "ARCHLAB_EXECUTOR__WARM": "true" if warm else "false"}
    command = [sys.executable, "-m", "archlab.cli", "run", "--runs-dir", str(runs_dir), *args]
    if workers:
        command += ["--workers", str(workers), "--batch", str(workers)]
    if steps:
        command += ["--short-steps", str(steps)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"archlab run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    run_dir = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    jobs = [e for e in log if e["type"] == "result"]
    candidates = {p.parent.name for p in run_dir.glob("candidates/*/candidate.json")}
    replaced = sum(e["type"] == "worker_replaced" for e in log)
    return {"workers": workers, "warm": warm, "wall_seconds": wall, "jobs": len(jobs), "candidates": len(candidates),
            "jobs_per_hour": len(jobs) / wall * 3600, "candidates_per_hour": len(candidates) / wall * 3600,
            "workers_replaced": replaced, "run_dir": str(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=250, help="steps of the short job in part 1")
    parser.add_argument("--loop-steps", type=int, default=150, help="short steps of the 2-round loops in part 2")
    parser.add_argument("--max-workers", type=int, default=None, help="largest worker count in part 2 (default: cores)")
    parser.add_argument("--skip-make-run", action="store_true", help="leave out part 3 (about 5 minutes)")
    parser.add_argument("--loops-only", action="store_true", help="part 2 only (warm and cold), into --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from archlab.executors.capacity import machine_cores
    from sandbox.gpu import detect_gpus
    cores, gpus = machine_cores(), detect_gpus()
    report: dict = {"machine": {"cores": cores, "gpus": len(gpus), "torch": torch.__version__,
                                "load_average_1min_start": os.getloadavg()[0]}, "targets": TARGETS}
    if not args.loops_only:
        report["per_job"] = overhead(args.repeats, args.train_steps)

    top = args.max_workers or max(2, cores)
    counts = sorted({1, 2, *(w for w in (4, 8, 16) if w <= top)})
    with tempfile.TemporaryDirectory(prefix="archlab-throughput-") as tmp:
        # warm and cold: a warm worker's replacement starts (imports torch) on a core of its own, which one
        # worker has to spare on a 2-core machine and two workers do not
        loops = [loop_run(w, args.loop_steps, Path(tmp) / f"w{w}-{warm}", args=("--rounds", "2", "--random-pool", "0"),
                          warm=warm) for warm in (True, False) for w in counts]
        for entry in loops:
            entry.pop("run_dir")
        report["loop"] = loops
        for warm in (True, False):
            mode = [e for e in loops if e["warm"] == warm]
            report["loop_speedup" if warm else "loop_speedup_cold"] = {
                str(e["workers"]): e["jobs_per_hour"] / mode[0]["jobs_per_hour"] for e in mode}
        if not (args.skip_make_run or args.loops_only):
            entry = loop_run(0, 0, Path(tmp) / "make-run", one_thread=False,   # the README's defaults, untouched
                             args=("--task", "mqar", "--rounds", "3", "--random-pool", "3"))
            entry.pop("run_dir")
            per_now = entry["wall_seconds"] / entry["candidates"]
            per_before = BEFORE_MAKE_RUN["seconds"] / BEFORE_MAKE_RUN["candidates"]
            report["make_run"] = {"after": entry, "before": BEFORE_MAKE_RUN,
                                  "seconds_per_candidate": {"before": per_before, "after": per_now},
                                  "speedup_per_candidate": per_before / per_now}
    report["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    over = report["per_job"]["overhead_seconds"]["trivial"] if "per_job" in report else {}
    parts = [f"warm {m.split('_')[0]} +{v:.2f} s" for m, v in over.items() if m.endswith("_warm")]
    parts += [f"cold {m.split('_')[0]} +{v:.2f} s" for m, v in over.items() if m.endswith("_cold")]
    parts.append(f"2 workers {report['loop_speedup']['2']:.2f}x the jobs/hour of 1 warm, "
                 f"{report['loop_speedup_cold']['2']:.2f}x cold")
    if "make_run" in report:
        m = report["make_run"]
        parts.append(f"make run {m['after']['wall_seconds']:.0f} s for {m['after']['candidates']} candidates "
                     f"({m['speedup_per_candidate']:.2f}x per candidate vs before)")
    print("throughput — " + "; ".join(parts) + f" -> {args.out}")


if __name__ == "__main__":
    main()
