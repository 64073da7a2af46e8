"""Fitness: a task's quality metric under cost constraints, and the Pareto front of quality vs cost.

An `Objective` names the quality metric (with its direction), hard limits on costs (params,
FLOPs, latency) and the cost axes of the Pareto front. `fitness(metrics, objective)` turns a
candidate's merged metrics into a `Fitness`: the quality oriented so that higher is better,
and whether it is feasible (within every limit), with each violated limit named. Infeasible
candidates are not given a made-up penalty score: selection decides what to do with them.
`pareto_front` returns the candidates no other candidate beats on quality and every cost at
once; `fronts_by_task` does it per task (quality metrics of different tasks never mix).

Cost metrics come from the `check`/`proxy` (`params`, `flops`, `flops_per_token`) and `bench`
(`latency_ms_median`, `peak_memory_bytes`) fidelities. Host side; no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from pydantic import BaseModel, Field



class Objective(BaseModel):
    """What "better" means for a search: one quality metric, cost limits, and the Pareto cost axes."""

    metric: str = "accuracy"                           # the quality metric (`Task.metric` for the task)
    higher_is_better: bool = True                      # False for losses
    limits: dict[str, float] = Field(default_factory=dict)  # cost metric -> largest allowed value
    costs: tuple[str, ...] = ("params",)               # cost axes of the Pareto front (lower is better)

    def oriented(self, value: float) -> float:
        """`value` of the metric turned so that higher is better (the one place the orientation is applied)."""
        return value if self.higher_is_better else -value


@dataclass(frozen=True)
class Fitness:
    value: float                   # quality, oriented so that higher is better
    feasible: bool
    violations: tuple[str, ...] = field(default=())


def fitness(metrics: Mapping[str, float], objective: Objective) -> Fitness:
    """The oriented quality and the feasibility of one candidate's metrics."""
    if objective.metric not in metrics:
        raise KeyError(f"the metrics have no {objective.metric!r} (have: {', '.join(sorted(metrics))}); "
                       "evaluate the candidate at a fidelity that reports it")
    quality = float(metrics[objective.metric])
    value = objective.oriented(quality)
    violations = []
    for name, limit in objective.limits.items():
        if name not in metrics:
            violations.append(f"{name} unknown (limit {limit:g}); run the fidelity that measures it")
        elif float(metrics[name]) > limit:
            violations.append(f"{name}={float(metrics[name]):g} over the limit {limit:g}")
    return Fitness(value if math.isfinite(value) else -math.inf, not violations, tuple(violations))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a and b are (quality, -cost1, -cost2, ...): all higher-is-better."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(items: Mapping[str, Mapping[str, float]], objective: Objective) -> list[str]:
    """Ids of the non-dominated candidates (quality up, every cost in `objective.costs` down), cheapest first.

    Candidates missing the quality metric or a cost are left out; ties (equal on every axis)
    are all kept.
    """
    points: dict[str, tuple[float, ...]] = {}
    for cid, metrics in items.items():
        if objective.metric not in metrics or any(c not in metrics for c in objective.costs):
            continue
        quality = objective.oriented(float(metrics[objective.metric]))
        point = (quality, *(-float(metrics[c]) for c in objective.costs))
        if all(math.isfinite(v) for v in point):
            points[cid] = point
    front = [cid for cid, p in points.items() if not any(_dominates(q, p) for q in points.values())]
    return sorted(front, key=lambda cid: (tuple(-v for v in points[cid][1:]), -points[cid][0], cid))


def fronts_by_task(items: Mapping[str, Mapping[str, Mapping[str, float]]],
                   objectives: Mapping[str, Objective]) -> dict[str, list[str]]:
    """{task: pareto_front(that task's candidates, that task's objective)}."""
    return {task: pareto_front(candidates, objectives.get(task, Objective())) for task, candidates in items.items()}
