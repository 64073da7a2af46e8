"""Repeated evaluations: several seeds become one result, and a verdict against the parent.

`aggregate` folds the per-seed results of one fidelity into the `EvalResult` a candidate's
`evaluations[fidelity]` holds: each metric is the mean over seeds, and the quality metric also
gets `<metric>_ci_low`, `<metric>_ci_high` (Student-t, `evaluators.stats.mean_ci`) and
`<metric>_std`. One failed seed fails the whole: a model that diverges once in three is not
"better" on average. `verdict` says whether a child beats its parent beyond the interval of
the difference (Welch). How far a candidate sits above the run's random architectures is
`agents.scoring.over_random`'s. Claims are made in one place, `agents.scoring.verdict`, which calls `verdict` where both
sides have several seeds and the run's noise floor where they do not.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from evaluators.stats import MIN_SEEDS, difference, mean_ci
from wire.jobs import EvalResult


def per_seed(results: list[EvalResult], metric: str) -> list[float]:
    return [float(r.metrics[metric]) for r in results if r.ok and metric in r.metrics]


def aggregate(results: list[EvalResult], metric: str) -> EvalResult:
    """One result for all seeds: means, the quality's interval, summed timings; the first failure if any."""
    if not results:
        raise ValueError("no seed results to aggregate")
    first = results[0]
    failed = [(i, r) for i, r in enumerate(results) if not r.ok]
    timings: dict[str, float] = {}
    for r in results:
        for key, value in r.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    environment = {**first.environment, "seeds": [r.environment.get("seed", i) for i, r in enumerate(results)],
                   "seed_job_ids": [r.job_id for r in results]}
    if failed:
        index, bad = failed[0]
        return first.model_copy(update={"status": bad.status, "metrics": {}, "timings": timings,
                                        "environment": environment, "log_tail": bad.log_tail,
                                        "message": f"seed {index} of {len(results)}: {bad.message}"})
    shared = set(first.metrics).intersection(*(r.metrics for r in results[1:]))
    metrics = {k: sum(r.metrics[k] for r in results) / len(results) for k in sorted(shared)}
    values = per_seed(results, metric)
    metrics["seeds"] = float(len(results))
    if len(values) >= MIN_SEEDS:
        interval = mean_ci(values)
        metrics.update({f"{metric}_ci_low": interval.low, f"{metric}_ci_high": interval.high,
                        f"{metric}_std": float(np.std(values, ddof=1))})
    curves = [r.curve for r in results if r.curve]
    curve = [sum(points) / len(points) for points in zip(*curves)] if curves else []
    return first.model_copy(update={"metrics": metrics, "curve": curve, "timings": timings,
                                    "environment": environment, "message": ""})


def verdict(child: list[float], parent: list[float], higher_is_better: bool = True) -> dict[str, Any]:
    """Child vs parent over seeds: the difference of means and its 95% interval; better/worse only beyond it."""
    sign = 1.0 if higher_is_better else -1.0
    result = difference([sign * v for v in child], [sign * v for v in parent])
    word = "better" if result.better else "worse" if result.worse else "not distinguishable"
    low, high = sorted((sign * result.low, sign * result.high))      # back in the metric's own units
    return {"delta": sign * result.delta, "low": low, "high": high, "better": result.better,
            "worse": result.worse, "verdict": word, "child_seeds": len(child), "parent_seeds": len(parent)}
