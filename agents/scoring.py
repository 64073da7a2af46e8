"""Scoring: the one place that says which candidate is better, by the run's `Objective`.

Everything that ranks candidates reads this module: parent choice (`agents.nodes.select`),
the run's best (`archlab runs` / `show`), what the agents are shown (`agents.llm.context`,
`agents.offline.engine`). No other module names a metric; they pass the run's objective in.

- A candidate's **score** is the objective's metric at the most expensive fidelity that
  measured it (`full`, the mean over seeds, else `short`, else `bench` for tasks whose
  quality is a measured speed, as the decode task's), oriented so that higher is
  better (`quality`), with its feasibility under the objective's cost limits
  (`evaluators.fitness.fitness` over the merged metrics of every fidelity).
- **Order** (`sort_key`): feasible before infeasible, then `full` before `short` (a result of
  the higher rung beats one of the lower, as successive halving's incumbent does), then quality,
  then the lower held-out loss at that fidelity (every task reports it: tiny runs often tie on
  accuracy). Remaining ties keep the callers' order (the records' id order).
- **Parents** (`parents`): baselines, evaluated proposals and random references, best first;
  those over a cost limit only when nothing else is left. A good reference is evidence like any
  other: the search may build on it. Screened and failed candidates never are parents.
- **Best** (`best`): the best-scored candidate the run knows about, whatever produced it
  (proposal, baseline or random reference), labelled with its origin; `best_proposal` is the
  best of the proposals alone, and `baselines_beaten` says which baselines it beats.
- **Comparison** (`compare`): two candidates at the most expensive fidelity both finished,
  as the raw difference and the oriented gain.
- **Against random** (`over_random`): a candidate against the run's random references at its
  quality fidelity (the "better than random" yardstick; references are its sample, not its
  subjects).

What it does not do: load records (callers pass the list they read once), fit the cheap
score of the proxy rung (`agents.screening`), or keep the Pareto front (`agents.objective`).
Host side, numbers only; no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from agents.objective import merged_metrics
from agents.records import Candidate
from evaluators.fitness import Objective, fitness

FIDELITIES = ("full", "short", "bench")   # the fidelities a quality is read at, most expensive first
PARENTS = ("baseline", "evaluated", "reference")   # statuses that can be parents
RESULTS = ("baseline", "evaluated")       # statuses of the run's own results (references join with `references`)
PROPOSALS = ("evaluated",)                # what the research engine produced
TIEBREAK = "heldout_loss"                 # lower breaks ties of the objective's metric; every task reports it
ORIGINS = {"baseline": "baseline", "reference": "random reference"}   # any other status: "proposal"


@dataclass(frozen=True)
class Score:
    candidate: Candidate
    fidelity: str                 # where the value was measured: "full" | "short"
    value: float                  # the objective's metric, in its own units (the mean over seeds at `full`)
    quality: float                # oriented: higher is better; -inf for a non-finite value
    feasible: bool                # within every cost limit of the objective
    violations: tuple[str, ...] = ()
    tiebreak: float = -math.inf   # minus the held-out loss at `fidelity`

    @property
    def origin(self) -> str:
        return origin(self.candidate)

    def key(self) -> tuple[bool, int, float, float]:
        return (self.feasible, FIDELITIES[::-1].index(self.fidelity), self.quality, self.tiebreak)


@dataclass(frozen=True)
class Comparison:
    fidelity: str                 # the most expensive fidelity both finished
    value: float                  # the candidate's metric there
    other: float                  # the other's metric there
    delta: float                  # value - other, in the metric's units
    gain: float                   # delta oriented: > 0 means the candidate is better


def origin(candidate: Candidate) -> str:
    """"proposal", "baseline" or "random reference"."""
    return ORIGINS.get(candidate.status, "proposal")


def _measured(candidate: Candidate, metric: str, fidelity: str) -> float | None:
    result = candidate.evaluations.get(fidelity)
    if result is None or not result.ok or metric not in result.metrics:
        return None
    return float(result.metrics[metric])


def _oriented(value: float, objective: Objective) -> float:
    quality = value if objective.higher_is_better else -value
    return quality if math.isfinite(quality) else -math.inf


def score(candidate: Candidate, objective: Objective) -> Score | None:
    """The candidate's score, or None when no training fidelity measured the objective's metric."""
    for fidelity in FIDELITIES:
        value = _measured(candidate, objective.metric, fidelity)
        if value is None:
            continue
        verdict = fitness(merged_metrics(candidate) | {objective.metric: value}, objective)
        loss = _measured(candidate, TIEBREAK, fidelity)
        tiebreak = -loss if loss is not None and math.isfinite(loss) else -math.inf
        return Score(candidate, fidelity, value, _oriented(value, objective), verdict.feasible, verdict.violations,
                     tiebreak)
    return None


def quality_at(candidate: Candidate, objective: Objective, fidelity: str) -> float | None:
    """The oriented quality measured at `fidelity`, or None when that fidelity did not report the metric."""
    value = _measured(candidate, objective.metric, fidelity)
    return None if value is None else _oriented(value, objective)


def quality(candidate: Candidate, objective: Objective) -> float | None:
    """The oriented quality (higher is better) at the candidate's most expensive fidelity, or None."""
    found = score(candidate, objective)
    return None if found is None else found.quality


def sort_key(candidate: Candidate, objective: Objective) -> tuple[bool, int, float, float]:
    """Sort with `reverse=True` for best first; a candidate without a score sorts last."""
    found = score(candidate, objective)
    return (False, -1, -math.inf, -math.inf) if found is None else found.key()


def ranked(candidates: Iterable[Candidate], objective: Objective,
           statuses: tuple[str, ...] | None = None) -> list[Score]:
    """The scored candidates (of `statuses`, or all), best first."""
    scores = [s for s in (score(c, objective) for c in candidates if statuses is None or c.status in statuses)
              if s is not None]
    return sorted(scores, key=Score.key, reverse=True)


def parents(candidates: Iterable[Candidate], objective: Objective) -> list[Candidate]:
    """Possible parents, best first; those over a cost limit only when nothing else is left."""
    pool = ranked(candidates, objective, PARENTS)
    feasible = [s.candidate for s in pool if s.feasible]
    return feasible or [s.candidate for s in pool]


def best(candidates: Iterable[Candidate], objective: Objective, references: bool = True) -> Score | None:
    """The best candidate the run knows about (proposal, baseline or random reference; without references when
    `references=False`), None if nothing is scored."""
    pool = ranked(candidates, objective, RESULTS + (("reference",) if references else ()))
    return pool[0] if pool else None


def best_proposal(candidates: Iterable[Candidate], objective: Objective) -> Score | None:
    """The best of the research engine's own proposals, None before one is scored."""
    pool = ranked(candidates, objective, PROPOSALS)
    return pool[0] if pool else None


def baselines_beaten(found: Score, candidates: Iterable[Candidate], objective: Objective) -> tuple[list[str], int]:
    """(ids of the baselines `found` beats, how many baselines are scored): it beats one when it ranks above it."""
    baselines = ranked(candidates, objective, ("baseline",))
    return [b.candidate.id for b in baselines if found.key() > b.key()], len(baselines)


def compare(candidate: Candidate, other: Candidate, objective: Objective) -> Comparison | None:
    """`candidate` against `other` at the most expensive fidelity both measured, or None if they share none."""
    for fidelity in FIDELITIES:
        a, b = _measured(candidate, objective.metric, fidelity), _measured(other, objective.metric, fidelity)
        if a is not None and b is not None:
            gain = _oriented(a, objective) - _oriented(b, objective)     # -inf when only the candidate diverged
            return Comparison(fidelity, a, b, a - b, 0.0 if math.isnan(gain) else gain)
    return None


def over_random(candidate: Candidate, candidates: Iterable[Candidate], objective: Objective) -> dict | None:
    """How far `candidate` sits above the run's random references (`agents.seeds.over_random`), at the training
    fidelity it reached; None for a reference itself, or without references measured there."""
    from agents import seeds
    from agents.objective import quality_fidelity
    if candidate.status == "reference":
        return None
    fidelity = quality_fidelity(candidate)
    if fidelity is None:
        return None
    pool = [v for c in candidates if c.status == "reference" and c.id != candidate.id
            and (v := c.metric(objective.metric, fidelity)) is not None]
    value = candidate.metric(objective.metric, fidelity)
    if value is None or not pool:
        return None
    return seeds.over_random(value, pool, fidelity, objective.higher_is_better)
