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
  best of the proposals alone, and `baselines_beaten` says which baselines it beats beyond
  the noise (by `verdict`).
- **Comparison** (`compare`): two candidates at the most expensive fidelity both finished,
  as the raw difference and the oriented gain: a number, never a claim.
- **Noise floor** (`noise_floors`): per rung, the seed-to-seed spread of the run's baselines
  and random references (each measured over several seeds there: the baselines at `short` in
  round 0, the references at `full`), pooled, as the half-width of the 95% interval of a
  difference between two single runs (`evaluators.stats.noise_floor`). Derived from the
  records, so every reader finds the same floor; the loop logs it as a `noise_floor` event.
- **Verdict** (`verdict`): the one place a difference becomes a claim. A candidate is
  "better" (or "worse") than another only when the 95% interval of the difference excludes
  zero: Welch's interval where both sides have several seeds at the rung they are compared
  at, else the difference must exceed that rung's noise floor; otherwise "not
  distinguishable" (also when the rung has no measured floor). The `Verdict` carries the
  interval it rests on, and `Verdict.text()` is the sentence `show`, the review page and both
  analysts print.
- **Standing** (`standing`): the run's best, and whether its lead is real: the candidates
  scored at the same rung that it does not beat beyond the noise are reported as tied with it.
- **Against random** (`over_random`): a candidate against the run's random references at its
  quality fidelity (the "better than random" yardstick; references are its sample, not its
  subjects): its distance from their mean, and how many of them it is better than by `verdict`.

What it does not do: load records (callers pass the list they read once), fit the cheap
score of the proxy rung (`agents.screening`), or keep the Pareto front (`agents.objective`).
Host side, numbers only; no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from agents import seeds
from agents.objective import merged_metrics, quality_fidelity
from agents.records import Candidate
from evaluators import stats
from evaluators.fitness import Objective, fitness

FIDELITIES = ("full", "short", "bench")   # the fidelities a quality is read at, most expensive first
PARENTS = ("baseline", "evaluated", "reference")   # statuses that can be parents
RESULTS = ("baseline", "evaluated")       # statuses of the run's own results (references join with `references`)
PROPOSALS = ("evaluated",)                # what the research engine produced
TIEBREAK = "heldout_loss"                 # lower breaks ties of the objective's metric; every task reports it
ORIGINS = {"baseline": "baseline", "reference": "random reference"}   # any other status: "proposal"
FLOOR_SOURCES = ("baseline", "reference")  # whose seed-to-seed spread is the run's noise floor
VERDICTS = ("better", "worse", "not distinguishable")


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
    quality = objective.oriented(value)
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


def baselines_beaten(found: Score, candidates: Iterable[Candidate], objective: Objective,
                     floors: Mapping[str, "Floor"] | None = None) -> tuple[list[str], int]:
    """(ids of the baselines `found` is better than beyond the noise, how many baselines are scored)."""
    candidates = list(candidates)
    floors = noise_floors(candidates, objective) if floors is None else floors
    baselines = ranked(candidates, objective, ("baseline",))
    beaten = [b.candidate.id for b in baselines if b.candidate.id != found.candidate.id
              and (v := verdict(found.candidate, b.candidate, objective, floors)) is not None and v.better]
    return beaten, len(baselines)


def compare(candidate: Candidate, other: Candidate, objective: Objective) -> Comparison | None:
    """`candidate` against `other` at the most expensive fidelity both measured, or None if they share none."""
    for fidelity in FIDELITIES:
        a, b = _measured(candidate, objective.metric, fidelity), _measured(other, objective.metric, fidelity)
        if a is not None and b is not None:
            gain = _oriented(a, objective) - _oriented(b, objective)     # -inf when only the candidate diverged
            return Comparison(fidelity, a, b, a - b, 0.0 if math.isnan(gain) else gain)
    return None


def over_random(candidate: Candidate, candidates: Iterable[Candidate], objective: Objective) -> dict | None:
    """How far `candidate` sits above the run's random references at the training fidelity it reached
    (`evaluators.stats.improvement_over_random`, in the metric's own units): the difference from their mean
    (`delta`), in their standard deviations (`z`), the share of them it beats (`beats`), and how many of them it is
    better than beyond the noise (`better_than`, by `verdict`). None for a reference itself, or without references
    measured there."""
    if candidate.status == "reference":
        return None
    fidelity = quality_fidelity(candidate)
    if fidelity is None:
        return None
    candidates = list(candidates)
    measured = {c.id: v for c in candidates if c.status == "reference" and c.id != candidate.id
                and (v := c.metric(objective.metric, fidelity)) is not None}
    references, pool = [c for c in candidates if c.id in measured], list(measured.values())
    value = candidate.metric(objective.metric, fidelity)
    if value is None or not pool:
        return None
    floors = noise_floors(candidates + [candidate], objective)
    better = [r.id for r in references if (v := verdict(candidate, r, objective, floors)) is not None and v.better]
    found = stats.improvement_over_random(objective.oriented(value), [objective.oriented(v) for v in pool])
    sign = 1.0 if objective.higher_is_better else -1.0          # back in the metric's own units
    return {"fidelity": fidelity, "delta": sign * found.delta, "z": found.z, "beats": found.beats, "pool": len(pool),
            "random_mean": sum(pool) / len(pool), "better_than": len(better)}


# --- the noise floor, verdicts and the run's standing ---------------------------------------------------------
@dataclass(frozen=True)
class Floor:
    """The noise of single runs at one rung, measured as the seed-to-seed spread of the floor sources."""
    fidelity: str
    metric: str
    value: float                  # the floor: half-width of the 95% interval of a difference of two single runs
    std: float                    # pooled seed-to-seed standard deviation of one run
    dof: int
    results: int                  # single runs it rests on
    sources: tuple[str, ...]      # the candidates measured over several seeds

    def text(self) -> str:
        return (f"{self.metric} ±{_fixed(self.value, self.value, sign=False)} at {self.fidelity} (seed-to-seed sd "
                f"{_fixed(self.std, self.std, sign=False)} from {self.results} runs of {len(self.sources)} architectures, "
                f"{self.dof} df)")

    def as_event(self) -> dict[str, Any]:
        return {"fidelity": self.fidelity, "metric": self.metric, "floor": self.value, "std": self.std,
                "dof": self.dof, "results": self.results, "sources": list(self.sources)}


def noise_floors(candidates: Iterable[Candidate], objective: Objective) -> dict[str, Floor]:
    """{fidelity: its noise floor} for every rung where some baseline or random reference has >= 2 finite seeds of
    the objective's metric."""
    candidates = list(candidates)
    out: dict[str, Floor] = {}
    for fidelity in FIDELITIES:
        groups = {}
        for c in candidates:
            values = seeds.per_seed(c.seeds.get(fidelity, []), objective.metric) if c.status in FLOOR_SOURCES else []
            if len(values) >= 2 and all(math.isfinite(v) for v in values):
                groups[c.id] = values
        found = stats.noise_floor(groups.values())
        if found is not None:
            out[fidelity] = Floor(fidelity, objective.metric, found.half_width, found.std, found.dof, found.results,
                                  tuple(sorted(groups)))
    return out


@dataclass(frozen=True)
class Verdict:
    """One candidate against another at the most expensive rung both finished, with the interval it rests on."""
    metric: str
    fidelity: str
    value: float                  # the candidate's metric there (the mean over seeds when judged over seeds)
    other: float
    delta: float                  # value - other, in the metric's units
    low: float | None             # the 95% interval of `delta` (None when there is none to give)
    high: float | None
    word: str                     # one of VERDICTS
    basis: str                    # "seeds" (Welch over seeds) | "floor" (the rung's noise floor) | "no floor" | "diverged"
    seeds: tuple[int, int]        # results on each side
    floor: float | None = None    # the rung's noise floor, when the verdict rests on it

    @property
    def better(self) -> bool:
        return self.word == "better"

    @property
    def worse(self) -> bool:
        return self.word == "worse"

    def interval(self, plain: bool = False) -> str:
        """What the verdict rests on, in words (`plain`: numbers as JSON writes them, for prompts)."""
        width, sign, pct = self._width(), not plain, " percent" if plain else "%"
        if self.basis == "seeds":
            return (f"95{pct} interval {_fixed(self.low, width, sign)} to {_fixed(self.high, width, sign)} over "
                    f"{self.seeds[0]} and {self.seeds[1]} seeds")
        if self.basis == "floor":
            return (f"95{pct} interval {_fixed(self.low, width, sign)} to {_fixed(self.high, width, sign)}: the "
                    f"noise floor ±{_fixed(self.floor, width, sign=False)} at {self.fidelity}, single runs")
        if self.basis == "no floor":
            return f"no noise floor measured at {self.fidelity}"
        return "a non-finite result"

    def text(self, plain: bool = False) -> str:
        """The verdict as every reader prints it: 'accuracy +0.012 at short (95% interval ...): not distinguishable'
        (`plain`: no leading '+' and no '%', for prompts whose numbers a model copies into JSON)."""
        delta = _fixed(self.delta, self._width(), not plain) if math.isfinite(self.delta) else "n/a"
        return f"{self.metric} {delta} at {self.fidelity} ({self.interval(plain)}): {self.word}"

    def trend(self) -> str:
        """What the change did to the metric, in the verdict's terms: 'improved accuracy', 'did not move ...'."""
        return {"better": "improved {}", "worse": "hurt {}"}.get(self.word, "did not move {} beyond the noise").format(
            self.metric)

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "fidelity": self.fidelity, "value": self.value, "other": self.other,
                "delta": self.delta, "low": self.low, "high": self.high, "verdict": self.word, "basis": self.basis,
                "better": self.better, "worse": self.worse, "child_seeds": self.seeds[0],
                "parent_seeds": self.seeds[1], "floor": self.floor, "text": self.text()}

    def _width(self) -> float:
        return abs(self.high - self.low) / 2 if self.low is not None and self.high is not None else abs(self.delta)


def _fixed(value: float | None, scale: float | None, sign: bool = True) -> str:
    """A number with enough decimals to show differences of size `scale` (at least 3)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    places = 3 if not scale or not math.isfinite(scale) or scale >= 0.005 else min(6, 2 - math.floor(math.log10(scale)))
    return format(value, f"{'+' if sign else ''}.{places}f")


def verdict(candidate: Candidate, other: Candidate, objective: Objective,
            floors: Mapping[str, Floor]) -> Verdict | None:
    """`candidate` against `other` at the most expensive rung both measured (None if they share none): "better" or
    "worse" only when the 95% interval of the difference excludes zero, "not distinguishable" otherwise.

    Over seeds (>= `seeds.MIN_SEEDS` on both sides at that rung): Welch's interval of the
    difference of means. Otherwise single runs: the difference plus and minus the rung's noise
    floor (`floors`, from `noise_floors`); a rung without a measured floor decides nothing.
    """
    found = compare(candidate, other, objective)
    if found is None:
        return None
    fidelity, metric = found.fidelity, objective.metric
    mine = seeds.per_seed(candidate.seeds.get(fidelity, []), metric)
    theirs = seeds.per_seed(other.seeds.get(fidelity, []), metric)
    counts = (max(1, len(mine)), max(1, len(theirs)))
    finite = math.isfinite(found.value), math.isfinite(found.other)
    if not all(finite):
        word = "not distinguishable" if finite == (False, False) else "better" if finite[0] else "worse"
        return Verdict(metric, fidelity, found.value, found.other, found.delta, None, None, word, "diverged", counts)
    if min(len(mine), len(theirs)) >= seeds.MIN_SEEDS and all(math.isfinite(v) for v in mine + theirs):
        judged = seeds.verdict(mine, theirs, objective.higher_is_better)
        return Verdict(metric, fidelity, sum(mine) / len(mine), sum(theirs) / len(theirs), judged["delta"],
                       judged["low"], judged["high"], judged["verdict"], "seeds", (len(mine), len(theirs)))
    floor = floors.get(fidelity)
    if floor is None:
        return Verdict(metric, fidelity, found.value, found.other, found.delta, None, None, "not distinguishable",
                       "no floor", counts)
    word = "better" if found.gain > floor.value else "worse" if found.gain < -floor.value else "not distinguishable"
    return Verdict(metric, fidelity, found.value, found.other, found.delta, found.delta - floor.value,
                   found.delta + floor.value, word, "floor", counts, floor.value)


@dataclass(frozen=True)
class Standing:
    """The run's best and whether its lead is real: `leads` holds its verdict against every other candidate scored at
    the same rung (and as feasible), best first; those it does not beat are tied with it."""
    best: Score
    leads: tuple[tuple[Score, Verdict], ...]
    floor: Floor | None           # the noise floor at the best's rung

    @property
    def tied(self) -> list[tuple[Score, Verdict]]:
        return [(s, v) for s, v in self.leads if not v.better]

    @property
    def runner_up(self) -> tuple[Score, Verdict] | None:
        return self.leads[0] if self.leads else None

    def text(self, shown: int = 4) -> str:
        """'tied with X (...) within the noise', or the lead over the runner-up with its interval."""
        tied = self.tied
        if tied:
            names = ", ".join(s.candidate.id for s, _ in tied[:shown]) + (
                f" and {len(tied) - shown} more" if len(tied) > shown else "")
            floor = (f" floor ±{_fixed(self.floor.value, self.floor.value, sign=False)} at {self.floor.fidelity}"
                     if self.floor is not None and any(v.basis == "floor" for _, v in tied) else "")
            details = "; ".join(f"over {s.candidate.id} ({s.origin}, {s.value:.3f}): {v.text()}" for s, v in tied[:shown])
            return f"tied with {names} within the noise{floor} (its lead {details})"
        if self.runner_up is None:
            return "nothing else scored at its rung to compare with"
        s, v = self.runner_up
        return f"its lead over the runner-up {s.candidate.id} ({s.origin}, {s.value:.3f}): {v.text()}"


def standing(candidates: Iterable[Candidate], objective: Objective, references: bool = True,
             floors: Mapping[str, Floor] | None = None) -> Standing | None:
    """The run's best (`best`) and its verdicts against the candidates scored at its rung; None if nothing is
    scored. `floors` default to the candidates' own (`noise_floors`)."""
    candidates = list(candidates)
    floors = noise_floors(candidates, objective) if floors is None else floors
    pool = ranked(candidates, objective, RESULTS + (("reference",) if references else ()))
    if not pool:
        return None
    top = pool[0]
    leads = tuple((s, v) for s in pool[1:] if s.fidelity == top.fidelity and s.feasible == top.feasible
                  and (v := verdict(top.candidate, s.candidate, objective, floors)) is not None)
    return Standing(top, leads, floors.get(top.fidelity))


def takes_lead(challenger: Score, incumbent: Score, objective: Objective, floors: Mapping[str, Floor]) -> bool:
    """Whether `challenger` replaces `incumbent` as the run's best: it ranks above it and, at the same rung and
    feasibility, is better beyond the noise (a higher rung or the feasible side wins as the ranking says)."""
    if challenger.key() <= incumbent.key():
        return False
    if (challenger.feasible, challenger.fidelity) != (incumbent.feasible, incumbent.fidelity):
        return True
    found = verdict(challenger.candidate, incumbent.candidate, objective, floors)
    return found is not None and found.better


def baselines_text(candidate: Candidate, baselines: Iterable[Candidate], objective: Objective,
                   floors: Mapping[str, Floor]) -> str:
    """Which baselines `candidate` is better than beyond the noise (`verdict`) and which it cannot be told from, as
    the analysts write it; "" without a baseline to compare with."""
    against = [(b.id, v) for b in baselines if b.id != candidate.id
               and (v := verdict(candidate, b, objective, floors)) is not None]
    if not against:
        return ""
    beaten = [bid for bid, v in against if v.better]
    level = [bid for bid, v in against if v.word == "not distinguishable"]
    return (f"It beats {len(beaten)} of {len(against)} baselines beyond the noise"
            + (f" ({', '.join(beaten)})" if beaten else "")
            + (f"; not distinguishable from {', '.join(level)}" if level else "") + ".")
