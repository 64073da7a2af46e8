"""Does the loop slow down as its history grows? Time between jobs and worker occupancy over a long offline run.

    python benchmarks/loop_orchestration.py [--rounds 40] [--short-steps 30] [--workers 2] [--task mqar]
    python benchmarks/loop_orchestration.py --events runs/RUN/events.jsonl     # read a finished run instead

Runs `archlab run --llm offline --sandbox process` (the long autonomous loop as issue 24 tried
it: MQAR, `--short-steps 30`, 2 workers) and reads its event log. Per round (from its
`round_started` to the next): its wall time, the seconds during which no job was in flight
(what the loop spends on itself between jobs: planning, checking, scoring, checkpoints), and
occupancy (the mean number of jobs in flight over the round, divided by the workers). A job is
in flight from its `job_started` to its `result`.

Target (issue 24): the median time with no job in flight over the last ten rounds within 1.5x
of the first ten. Also printed: mean occupancy (target 0.95, which needs the scheduler of issue
24 that keeps workers busy across the round barrier; this only measures it).

Writes benchmarks/results/loop_orchestration.json (every round's figures) and prints one
summary line. One run, no repeats: the per-round figures are the sample, first ten against last
ten. What this does not do: attribute the time (run the same command under `py-spy record` for
that), or measure a GPU machine.
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "loop_orchestration.json"
TARGET_RATIO = 1.5


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def per_round(events: list[dict], workers: int) -> list[dict]:
    """Each round's wall seconds, seconds with no job in flight, and occupancy."""
    jobs, started = [], {}
    for e in events:
        if e["type"] == "job_started":
            started[e["payload"]["job_id"]] = e["time"]
        elif e["type"] == "result" and e["payload"]["job_id"] in started:
            jobs.append((started.pop(e["payload"]["job_id"]), e["time"]))
    bounds = [(e["payload"]["round"], e["time"]) for e in events if e["type"] == "round_started"]
    end = events[-1]["time"]
    rows = []
    for k, (number, begin) in enumerate(bounds):
        finish = bounds[k + 1][1] if k + 1 < len(bounds) else end
        cuts = sorted({begin, finish, *(t for s, f in jobs for t in (s, f) if begin < t < finish)})
        area = idle = 0.0
        for a, b in zip(cuts, cuts[1:]):
            flying = sum(1 for s, f in jobs if s <= a and f >= b)
            area += flying * (b - a)
            idle += (b - a) if flying == 0 else 0.0
        wall = finish - begin
        rows.append({"round": number, "seconds": wall, "no_job_seconds": idle,
                     "occupancy": area / (wall * workers) if wall > 0 else 0.0})
    return rows


def summarise(rows: list[dict], window: int = 10) -> dict:
    first, last = rows[:window], rows[-window:]
    early = statistics.median(r["no_job_seconds"] for r in first)
    late = statistics.median(r["no_job_seconds"] for r in last)
    ratio = late / early if early > 0 else float("inf")
    return {"rounds": len(rows), "window": window,
            "no_job_median_first": early, "no_job_median_last": late, "ratio": ratio,
            "round_median_first": statistics.median(r["seconds"] for r in first),
            "round_median_last": statistics.median(r["seconds"] for r in last),
            "occupancy_mean": statistics.mean(r["occupancy"] for r in rows),
            "target_ratio": TARGET_RATIO, "met": ratio <= TARGET_RATIO}


def run_loop(args) -> Path:
    runs = Path(tempfile.mkdtemp(prefix="loop-orchestration-"))
    command = [sys.executable, "-m", "archlab.cli", "run", "--task", args.task, "--rounds", str(args.rounds),
               "--short-steps", str(args.short_steps), "--workers", str(args.workers), "--llm", "offline",
               "--sandbox", "process", "--runs-dir", str(runs)]
    env = {**os.environ, "ARCHLAB_KNOWLEDGE__EMBEDDER": "hashing"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the run failed: {done.stderr[-2000:]}")
    print(f"run of {args.rounds} rounds in {time.perf_counter() - started:.0f} s", flush=True)
    return next(runs.glob("*/events.jsonl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--short-steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", default="mqar")
    parser.add_argument("--events", type=Path, help="a finished run's events.jsonl instead of a new run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    path = args.events or run_loop(args)
    rows = per_round(read_events(path), args.workers)
    found = summarise(rows)
    result = {"command": " ".join(sys.argv), "settings": {k: getattr(args, k) for k in
                                                           ("rounds", "short_steps", "workers", "task")},
              "summary": found, "rounds": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"loop_orchestration: {found['rounds']} rounds; no job in flight, median per round: first ten "
          f"{found['no_job_median_first']:.2f} s, last ten {found['no_job_median_last']:.2f} s "
          f"(x{found['ratio']:.1f}, target <= x{TARGET_RATIO}: {'MET' if found['met'] else 'MISSED'}); "
          f"occupancy {found['occupancy_mean']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
