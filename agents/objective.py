"""The run's objective applied to its candidates: fitness, feasibility, and the Pareto front on disk.

A candidate's metrics are merged from its evaluations, cheapest first, so the most expensive
fidelity wins (`check` < `proxy` < `bench` < `short` < `full`; `full` holds the mean over
seeds). `evaluators.fitness` turns them into the oriented quality and the cost-limit verdict.
The front of quality against the objective's cost axes is kept per task in
`<run>/pareto.json` and rewritten whenever a candidate gets a new result.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from agents.records import Candidate
from evaluators.fitness import Objective, fitness, pareto_front

MERGE_ORDER = ("check", "proxy", "bench", "short", "full")
BENCH_METRICS = ("latency_ms_median", "latency_ms_p90", "throughput", "peak_memory_bytes", "latency_cv")
ON_FRONT = ("baseline", "evaluated")      # references and screened candidates are not proposals


def merged_metrics(candidate: Candidate) -> dict[str, float]:
    merged: dict[str, float] = {}
    for fidelity in MERGE_ORDER:
        result = candidate.evaluations.get(fidelity)
        if result is not None and result.ok:
            merged.update(result.metrics)
    return merged


def quality_fidelity(candidate: Candidate) -> str | None:
    """The most expensive training fidelity the candidate finished."""
    for fidelity in ("full", "short"):
        result = candidate.evaluations.get(fidelity)
        if result is not None and result.ok:
            return fidelity
    return None


def needs_bench(objective: Objective) -> bool:
    return any(name in BENCH_METRICS for name in (*objective.limits, *objective.costs))


def apply(candidate: Candidate, objective: Objective) -> None:
    """Set the candidate's fitness, feasibility and violations from what it has been measured at."""
    metrics = merged_metrics(candidate)
    if objective.metric not in metrics:
        candidate.fitness, candidate.feasible, candidate.violations = None, None, []
        return
    found = fitness(metrics, objective)
    candidate.fitness, candidate.feasible, candidate.violations = found.value, found.feasible, list(found.violations)


def front(candidates: list[Candidate], objective: Objective) -> list[dict]:
    """The non-dominated proposals and baselines, cheapest first, with the numbers that put them there."""
    items = {c.id: merged_metrics(c) for c in candidates if c.status in ON_FRONT}
    ids = pareto_front(items, objective)
    by_id = {c.id: c for c in candidates}
    return [{"id": cid, objective.metric: items[cid][objective.metric], "fidelity": quality_fidelity(by_id[cid]),
             **{cost: items[cid][cost] for cost in objective.costs}, "feasible": by_id[cid].feasible} for cid in ids]


def write_front(run_dir: Path, task: str, candidates: list[Candidate], objective: Objective) -> tuple[list[dict], bool]:
    """Rewrite `<run>/pareto.json` ({task: {objective, front}}) atomically; returns this task's front and
    whether its membership changed."""
    path = run_dir / "pareto.json"
    try:
        kept = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        kept = {}                     # a torn file is rebuilt from the records
    points = front(candidates, objective)
    previous = kept.get(task) if isinstance(kept.get(task), dict) else {}
    before = [p.get("id") for p in previous.get("front", [])]
    kept[task] = {"objective": objective.model_dump(mode="json"), "front": points}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(kept, indent=2))
    os.replace(tmp, path)
    return points, before != [p["id"] for p in points]
