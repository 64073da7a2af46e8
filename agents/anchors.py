"""The anchor set: which items of the task's downstream suite the run's `short` jobs score, fitted on its own results.

A task with a downstream suite (`Task.suite_scenarios`: the `lm` task's, `evaluators.suite`)
scores every `full` job on the whole suite. `short` jobs score the whole suite too until
`fit_after` of them have (these results are what the anchors are fitted on: "uniform until
enough exist" would have nothing to fit from); then the run fits an anchor set of `items`
items (`evaluators.item_selection`, method `method`) on every whole-suite result at `short`,
and later `short` jobs score only those items, their weighted scores estimating the suite's
score (`suite_score`, with `suite_items` saying how many were scored). The set is refitted
each time `refit_every` more whole-suite results exist.

With each fit the run measures, on the results it was fitted on:
- `tau`: Kendall's tau between the anchor estimates (cross-validated: a result's estimate
  comes from anchors fitted without it) and the whole-suite scores;
- `error`: the mean absolute error of those estimates on the suite's score;
- `reliability` (DIoR-style): re-drawing the subset (`draws` times), the share of pairwise
  decisions "a better than b" that stand, and `top_k`, the share of draws that keep the
  whole suite's top k.
A set whose `reliability` is under `min_reliability` is logged but not used: the decisions it
would make are not reliable, so `short` jobs keep scoring the whole suite (and add to what
the next fit has). One decision at a time too (`escalate`): when the objective ranks by a
suite metric, a `short` result on the anchor set is compared with its parent's over
resampled anchor subsets (paired bootstrap, `evaluators.item_selection.decision_reliability`);
a verdict that stands in fewer than `decision_reliability` of them is taken again on the whole
suite (the job re-run with every item, `<id>-short-whole-0`), logged as a `suite_decision`. Each fit is a `suite_anchors` event; a job records the set it scored
(`EvalJob.items`), and replay, fed the same results, fits the same set.

What this does not do: choose the suite's scenarios (all of them are kept; the anchors pick
items within each), or re-score a finished job on more items.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agents.event_types import SuiteAnchors, SuiteDecision
from evaluators.tasks import task_of
from wire.jobs import SUITE_PREFIX, EvalResult, ItemSubset

if TYPE_CHECKING:
    from agents.lab import Lab
    from agents.records import Candidate

FIDELITY = "short"       # the rung anchors are fitted on and used at


class AnchorPolicy(BaseModel):
    """`[suite]` in lab.toml: how the run chooses the items its cheaper jobs score."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="fit and use an anchor set where the task has a downstream suite")
    method: Literal["anchor_points", "irt", "uniform"] = Field(
        "anchor_points", description="how items are chosen (evaluators.item_selection); uniform is the baseline")
    items: int = Field(100, ge=1, description="anchor items in all, split over the scenarios")
    fit_after: int = Field(8, ge=4, description="whole-suite results at short before the first fit")
    refit_every: int = Field(4, ge=1, description="new whole-suite results at short between fits")
    min_reliability: float = Field(0.8, ge=0, le=1, description="a set whose pairwise decisions stand less often "
                                                                "than this is not used")
    draws: int = Field(50, ge=2, description="re-drawn subsets behind the reliability figures")
    decision_reliability: float = Field(0.9, ge=0, le=1, description="when the objective ranks by a suite metric: "
                                        "a short verdict against the parent on the anchor set that stands in fewer "
                                        "resampled subsets than this is taken again on the whole suite")


def whole_suite_results(candidates: list[Candidate], size: int) -> list[EvalResult]:
    """Every run at `short` (seeds too) scored on the whole suite of `size` items, in a fixed order."""
    found = []
    for candidate in sorted(candidates, key=lambda c: c.id):
        runs = [candidate.evaluations.get(FIDELITY), *candidate.seeds.get(FIDELITY, [])]
        seen = set()
        for result in runs:
            if result is None or not result.ok or result.items is None or len(result.items.items) != size:
                continue
            if result.job_id in seen:
                continue
            seen.add(result.job_id)
            found.append(result)
    return found


def newest(events) -> SuiteAnchors | None:
    """The newest `suite_anchors` event's payload among `events`, or None."""
    events = events if isinstance(events, list) else list(events)
    return next((e.data for e in reversed(events) if isinstance(e.data, SuiteAnchors)), None)


def subset_for(lab: Lab, fidelity: str) -> ItemSubset | None:
    """The items a job at `fidelity` scores: the newest used anchor set at `short`, else None (the whole suite)."""
    if fidelity != FIDELITY or not lab.suite.enabled:
        return None
    found = newest(lab.events.history)
    if found is None or not found.used:
        return None
    return subset_of(found)


def subset_of(fitted: SuiteAnchors) -> ItemSubset:
    """The job record of a `suite_anchors` event's set."""
    return ItemSubset(id=fitted.id, method=fitted.method, items=tuple(fitted.items), weights=tuple(fitted.weights),
                      scenarios=tuple(fitted.labels), offsets=tuple(fitted.offsets), scales=tuple(fitted.scales))


def maybe_fit(lab: Lab, round: int) -> None:
    """Fit (or refit) the anchor set when enough whole-suite results exist, and log it (`suite_anchors`)."""
    from evaluators import item_selection as select
    policy = lab.suite
    described = task_of(lab.spec).suite_scenarios(lab.spec)
    if not policy.enabled or described is None:
        return
    names, labels = described
    results = whole_suite_results(lab.peers(len(lab.collected())), len(labels))   # what the run has collected
    previous = newest(lab.events.history)
    if len(results) < policy.fit_after or (previous is not None and
                                           len(results) - previous.sources < policy.refit_every):
        return
    scores = np.array([r.items.scores for r in results], dtype=np.float64)
    correct = np.array([r.items.correct for r in results], dtype=np.int64)
    n = min(policy.items, len(labels))
    seed = lab.seed * 1_000_003 + len(results)
    chosen = select.select(policy.method, scores, correct, labels, n, seed=seed)
    estimates = select.cross_validated(policy.method, scores, correct, labels, n,
                                       folds=min(5, len(results)), seed=seed)
    truth = select.full_score(scores, labels)
    reliable = select.reliability(policy.method, scores, correct, labels, n, draws=policy.draws, seed=seed)
    fitted = chosen.to_dict()
    digest = hashlib.sha256(json.dumps(fitted, sort_keys=True).encode()).hexdigest()[:12]
    used = reliable.pairwise_agreement >= policy.min_reliability
    lab.events.emit(SuiteAnchors(
        round=round, id=digest, method=policy.method, items=fitted["items"], weights=fitted["weights"],
        labels=fitted["scenarios"], offsets=fitted["offsets"], scales=fitted["scales"], suite_items=len(labels),
        scenarios=list(names), sources=len(results), source_jobs=[r.job_id for r in results],
        tau=float(select.kendall_tau(estimates, truth)), error=float(np.mean(np.abs(estimates - truth))),
        reliability=float(reliable.pairwise_agreement), top_k=float(reliable.top_k_agreement), k=int(reliable.k),
        used=bool(used),
        reason="" if used else (f"pairwise decisions stand in {reliable.pairwise_agreement:.2f} of re-drawn subsets, "
                                f"under {policy.min_reliability}: short jobs keep the whole suite")))


def escalate(lab: Lab, candidate: Candidate, parent: Candidate | None, result: EvalResult, round: int) -> EvalResult:
    """`result` (short, on the anchor set), or the same job on the whole suite when the objective ranks by a suite
    metric and the verdict against `parent` on the anchors is not reliable (see the module docstring)."""
    from evaluators import item_selection as select
    metric = lab.objective.metric
    scored = result.items
    if not result.ok or scored is None or not metric.startswith(SUITE_PREFIX) or metric not in result.metrics:
        return result
    anchors = subset_for(lab, FIDELITY)
    if anchors is None or sorted(anchors.items) != sorted(scored.items):
        return result                                    # scored on the whole suite (or another set): nothing to redo
    reference = parent.evaluations.get(FIDELITY) if parent is not None else None
    if parent is None or reference is None:
        return result                                    # no verdict to take
    anchor_set = select.AnchorSet.from_dict(anchors.model_dump())
    reliability = None
    if reference.ok and reference.items is not None:
        mine, theirs = _on(anchor_set.items, scored, metric), _on(anchor_set.items, reference.items, metric)
        if theirs is not None:
            draws = select.bootstrap_estimates(anchor_set, np.stack([mine, theirs]), draws=200,
                                               seed=lab.seed * 1_000_003 + len(anchor_set.items))
            point = select.estimate(anchor_set, mine) > select.estimate(anchor_set, theirs)
            reliability = select.decision_reliability(draws[:, 0], draws[:, 1], point)
    escalated = reliability is None or reliability < lab.suite.decision_reliability
    lab.events.emit(SuiteDecision(round=round, candidate_id=candidate.id, parent_id=parent.id, metric=metric,
                                  anchors=anchors.id, reliability=reliability, escalated=escalated))
    if not escalated:
        return result
    return lab.run_job(candidate, FIDELITY, whole_suite=True)


def _on(items: tuple[int, ...], scored, metric: str) -> np.ndarray | None:
    """A result's per-item values (accuracy: top choice right; else probability on the right one) on `items`, in
    that order; None when it did not score them all."""
    values = scored.correct if metric.endswith("accuracy") else scored.scores
    found = dict(zip(scored.items, values))
    if any(i not in found for i in items):
        return None
    return np.array([found[i] for i in items], dtype=np.float64)


class SuiteRow(BaseModel):
    """One candidate's downstream-suite scores, at the most expensive rung that has them."""

    candidate_id: str
    fidelity: str
    score: float                     # suite_score (an estimate when `items` < the suite's size)
    accuracy: float | None
    items: int
    scenarios: dict[str, float]      # per scenario, as scored


class SuiteReport(BaseModel):
    """What the page and `archlab show` print about the downstream suite: each candidate's per-scenario scores and the
    anchor set in use (the newest `suite_anchors` event's payload)."""

    scenarios: list[str]
    rows: list[SuiteRow]
    anchors: SuiteAnchors | None = None

    def anchor_text(self) -> str:
        a = self.anchors
        if a is None:
            return "no anchor set yet: short jobs score the whole suite"
        state = "in use at short" if a.used else "not used (" + a.reason + ")"
        return (f"anchor set {a.id} ({a.method}): {len(a.items)} of {a.suite_items} items, fitted on "
                f"{a.sources} whole-suite results; Kendall tau with the whole suite {a.tau:.2f}, estimated error "
                f"on its score {a.error:.3f}; reliability: {a.reliability:.2f} of pairwise decisions and "
                f"{a.top_k:.2f} of top-{a.k} sets stand under re-drawn subsets; {state}")


SUITE_TOTALS = ("suite_score", "suite_accuracy", "suite_items", "suite_forward_tokens")


def report(candidates: list[Candidate], events) -> SuiteReport | None:
    """The suite's scores per candidate (full before short) and the newest anchor set, from a run's records; None when
    no candidate has suite scores."""
    scenarios: list[str] = []
    rows = []
    for candidate in sorted(candidates, key=lambda c: c.id):
        for fidelity in ("full", "short"):
            result = candidate.evaluations.get(fidelity)
            if result is None or not result.ok or "suite_score" not in result.metrics:
                continue
            m = result.metrics
            scenarios += [k.removeprefix("suite_") for k in m if k.startswith("suite_") and k not in SUITE_TOTALS
                          and k.removeprefix("suite_") not in scenarios]
            rows.append(SuiteRow(candidate_id=candidate.id, fidelity=fidelity, score=m["suite_score"],
                                 accuracy=m.get("suite_accuracy"), items=int(m.get("suite_items", 0)),
                                 scenarios={k.removeprefix("suite_"): v for k, v in m.items()
                                            if k.startswith("suite_") and k not in SUITE_TOTALS}))
            break
    if not rows:
        return None
    rows.sort(key=lambda r: (r.fidelity != "full", -r.score))
    found = newest(events)
    return SuiteReport(scenarios=list(scenarios), rows=rows, anchors=found)
