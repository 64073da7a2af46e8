"""Does the loop slow down as its history grows? Time between jobs and worker occupancy over a long offline run.

    python benchmarks/loop_orchestration.py [--rounds 40] [--short-steps 30] [--workers 2] [--task mqar]
    python benchmarks/loop_orchestration.py --events runs/RUN/events.jsonl     # read a finished run instead

Runs `archlab run --llm offline --sandbox process` (the long autonomous loop as issue 24 tried
it: MQAR, `--short-steps 30`, 2 workers) and reads its event log. Per round (from its
`round_started` to the next): its wall time, the seconds during which no job was in flight
(what the loop spends on itself between jobs: planning, checking, scoring, checkpoints), and
occupancy (the mean number of jobs in flight over the round, divided by the workers); and the
run's occupancy over its whole wall time, as `archlab run` prints it. Both come from
`archlab.occupancy` (a job is in flight from its `job_started` to its `result`; busy workers
are min(jobs in flight, workers)).

Targets (issue 24): the median time with no job in flight over the last ten rounds within 1.5x
of the first ten; occupancy >= 0.95 over the run (which needs the scheduler of issue 24 that
keeps workers busy across the round barrier; this only measures it).

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
sys.path.insert(0, str(ROOT))

from agents.events import Event, read_events as events_of  # noqa: E402
from archlab.occupancy import Meter, Occupancy, of_events, recorded_workers  # noqa: E402
OUT = ROOT / "benchmarks" / "results" / "loop_orchestration.json"
TARGET_RATIO = 1.5
TARGET_OCCUPANCY = 0.95


def read_events(path: Path) -> list[Event]:
    return events_of(path)[0]


def per_round(events: list[Event], workers: int) -> list[dict]:
    """Each round's wall seconds, seconds with no job in flight, and occupancy (`archlab.occupancy`, one reading of
    the run's meter at every `round_started`, a round being the stretch between two)."""
    meter = Meter(workers)
    rows: list[dict] = []
    opened: tuple[int, Occupancy] | None = None

    def close(now: Occupancy) -> None:
        if opened is not None:
            stretch = now.since(opened[1])
            rows.append({"round": opened[0], "seconds": stretch.wall_seconds, "no_job_seconds": stretch.no_job_seconds,
                         "occupancy": stretch.value, "jobs": stretch.jobs})
    for e in events:
        meter.feed(e)
        if e.type == "round_started":
            close(meter.reading())
            opened = (e.payload["round"], meter.reading())
    close(meter.reading())
    return rows


def summarise(rows: list[dict], run: Occupancy, window: int = 10) -> dict:
    # the last stretch runs from the last round's start to the end of the run: its idle tail (the last jobs done,
    # the run's summary) is no time *between* jobs, so the late window is the ten rounds before it
    first, last = rows[:window], rows[-window - 1:-1] if len(rows) > window else rows[-window:]
    early = statistics.median(r["no_job_seconds"] for r in first)
    late = statistics.median(r["no_job_seconds"] for r in last)
    # with no round barrier the median is often 0 at both ends (some job is always in flight): then the means say
    # whether the idle time grows
    basis = "median"
    if early == 0:
        basis = "mean"
        early = statistics.mean(r["no_job_seconds"] for r in first)
        late = statistics.mean(r["no_job_seconds"] for r in last)
    ratio = late / early if early > 0 else (1.0 if late == 0 else float("inf"))
    return {"rounds": len(rows), "window": window, "basis": basis,
            "no_job_median_first": early, "no_job_median_last": late, "ratio": ratio,
            "round_median_first": statistics.median(r["seconds"] for r in first),
            "round_median_last": statistics.median(r["seconds"] for r in last),
            "occupancy_mean": statistics.mean(r["occupancy"] for r in rows),     # of the per-round figures
            # over the whole run's wall time (baselines included), as `archlab run` prints it
            "occupancy": run.value, "workers": run.workers, "wall_seconds": run.wall_seconds, "jobs": run.jobs,
            "target_ratio": TARGET_RATIO, "met": ratio <= TARGET_RATIO,
            "target_occupancy": TARGET_OCCUPANCY, "occupancy_met": run.value >= TARGET_OCCUPANCY}


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
    parser.add_argument("--workers", type=int, default=None,
                        help="jobs at once (default 2; with --events, as the run's run.json recorded)")
    parser.add_argument("--task", default="mqar")
    parser.add_argument("--events", type=Path, help="a finished run's events.jsonl instead of a new run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.workers is None:
        record = args.events.parent / "run.json" if args.events else None
        args.workers = recorded_workers(json.loads(record.read_text())["settings"]) \
            if record is not None and record.is_file() else 2
    path = args.events or run_loop(args)
    events = read_events(path)
    rows = per_round(events, args.workers)
    found = summarise(rows, of_events(events, args.workers))
    result = {"command": " ".join(sys.argv), "settings": {k: getattr(args, k) for k in
                                                           ("rounds", "short_steps", "workers", "task")},
              "summary": found, "rounds": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(f"loop_orchestration: {found['rounds']} rounds; no job in flight, {found['basis']} per round: first ten "
          f"{found['no_job_median_first']:.2f} s, last ten {found['no_job_median_last']:.2f} s "
          f"(x{found['ratio']:.1f}, target <= x{TARGET_RATIO}: {'MET' if found['met'] else 'MISSED'}); "
          f"occupancy {found['occupancy']:.2f} of {found['workers']} workers (target >= {TARGET_OCCUPANCY}: "
          f"{'MET' if found['occupancy_met'] else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
