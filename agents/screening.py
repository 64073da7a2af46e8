"""The loop's successive halving, one candidate at a time: proxy -> short -> full.

A run sees its candidates one by one, so each rung of successive halving is decided online:
a candidate that finished rung `proxy` (or `short`) is ranked by the cheap score among every
candidate of the run that reached that rung (baselines and random references included), and
goes on only while it is in the top `keep` share (`rung_decision`).

The cheap score is `evaluators.promotion.CheapScore`, re-fitted from this run's own records
every time it is used:
- at the `proxy` rung, over the zero-cost proxies, fitted against the most expensive quality
  the run has enough of (`full` when at least `MIN_COMPLETED` candidates finished it, else
  `short`);
- at the `short` rung, over the proxies and the short-run signals, fitted against `full`;
  until enough candidates finished `full` it ranks by the short signals alone (short
  accuracy is the best prior there is).

`tau_report` gives the score's current Kendall tau against the expensive quality — in-sample
and leave-one-out — which the loop logs as a `cheap_score` event at the end of every round.

Host side, numbers only: everything here reads `Candidate` records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from agents.records import Candidate
from evaluators.promotion import (MIN_COMPLETED, PROXY_SIGNALS, SHORT_SIGNALS, CheapScore, cross_validated_tau,
                                  kendall, short_signals, top_fraction)
from wire.task import TaskSpec

TRAINABLE = ("baseline", "reference", "evaluated", "screened", "checked")   # statuses that can hold rung results


def signals(candidate: Candidate, spec: TaskSpec, metric: str, higher_is_better: bool = True) -> dict[str, float]:
    """The cheap signals a candidate has so far: proxies, and once it has a short run, the short signals
    (`short_quality` oriented so that higher is better, whatever the metric's direction)."""
    out: dict[str, float] = {}
    proxy = candidate.evaluations.get("proxy")
    if proxy is not None and proxy.ok:
        out.update({k: float(v) for k, v in proxy.metrics.items() if k in PROXY_SIGNALS and math.isfinite(v)})
    short = candidate.evaluations.get("short")
    if short is not None and short.ok:
        out.update(short_signals(short.metrics, short.curve, spec.budgets["short"].steps,
                                 spec.budgets["full"].steps if "full" in spec.budgets else spec.budgets["short"].steps,
                                 metric))
        if not higher_is_better and "short_quality" in out:
            out["short_quality"] = -out["short_quality"]
    return out


def quality(candidates: Iterable[Candidate], fidelity: str, metric: str, higher_is_better: bool = True) -> dict[str, float]:
    """{id: quality at `fidelity`} (higher is better; `full` is the mean over seeds) for those that have it."""
    sign = 1.0 if higher_is_better else -1.0
    out = {}
    for c in candidates:
        value = c.metric(metric, fidelity)
        if value is not None and math.isfinite(value):
            out[c.id] = sign * float(value)
    return out


def expensive_target(candidates: list[Candidate], metric: str, higher_is_better: bool,
                     fidelities: tuple[str, ...] = ("full", "short")) -> tuple[str, dict[str, float]]:
    """The most expensive fidelity with at least `MIN_COMPLETED` results, and those results."""
    for fidelity in fidelities:
        found = quality(candidates, fidelity, metric, higher_is_better)
        if len(found) >= MIN_COMPLETED:
            return fidelity, found
    return fidelities[-1], quality(candidates, fidelities[-1], metric, higher_is_better)


@dataclass
class RungDecision:
    rung: str                 # the rung just finished: "proxy" | "short"
    to: str                   # where a promoted candidate goes: "short" | "full"
    rank: int                 # 1 = best
    pool: int                 # candidates ranked at this rung
    keep: int                 # how many of them go on
    promoted: bool
    score: float
    target: str               # the fidelity the score was fitted against ("prior" before enough results)
    weights: dict[str, float]

    def as_event(self, candidate_id: str) -> dict:
        return {"candidate_id": candidate_id, "rung": self.rung, "to": self.to, "rank": self.rank, "pool": self.pool,
                "keep": self.keep, "promoted": self.promoted, "score": round(self.score, 6), "target": self.target,
                "weights": {k: round(v, 4) for k, v in self.weights.items()}}


def fitted_score(candidates: list[Candidate], table: dict[str, dict[str, float]], rung: str, metric: str,
                 higher_is_better: bool) -> tuple[CheapScore, str]:
    """The cheap score used at `rung`, fitted on the run's records (`table`: their signals), and what it was
    fitted against."""
    if rung == "proxy":
        target, expensive = expensive_target(candidates, metric, higher_is_better)
        cheap = CheapScore.fit(table, expensive, names=PROXY_SIGNALS)
    else:
        target, expensive = "full", quality(candidates, "full", metric, higher_is_better)
        cheap = CheapScore.fit(table, expensive, names=PROXY_SIGNALS + SHORT_SIGNALS)
        if cheap.n_completed < MIN_COMPLETED:      # no full results to learn from: rank by the short run
            cheap = CheapScore.prior(("short_quality", "short_loss"))
    return cheap, target if cheap.n_completed >= MIN_COMPLETED else "prior"


def rung_decision(candidates: list[Candidate], candidate_id: str, rung: str, keep: float, spec: TaskSpec,
                  metric: str = "accuracy", higher_is_better: bool = True) -> RungDecision:
    """Rank `candidate_id` among the run's candidates that finished `rung`; promote it if in the top `keep`.

    The online form of `evaluators.promotion.successive_halving`: one candidate at a time against its rung as
    the run has it, with the same cut (`top_fraction`)."""
    peers = [c for c in candidates if c.status in TRAINABLE and c.evaluations.get(rung) is not None
             and c.evaluations[rung].ok]
    if candidate_id not in {c.id for c in peers}:
        raise ValueError(f"{candidate_id} has no ok {rung} result to rank")
    table = {c.id: signals(c, spec, metric, higher_is_better) for c in candidates}
    cheap, target = fitted_score(candidates, table, rung, metric, higher_is_better)
    scores = cheap.score({c.id: table[c.id] for c in peers})
    ordered = sorted(scores, key=lambda cid: (-scores[cid], cid))
    kept = top_fraction(scores, keep)
    return RungDecision(rung, "short" if rung == "proxy" else "full", ordered.index(candidate_id) + 1, len(ordered),
                        len(kept), candidate_id in kept, scores[candidate_id], target, dict(cheap.weights))


def tau_report(candidates: list[Candidate], spec: TaskSpec, metric: str = "accuracy",
               higher_is_better: bool = True) -> dict:
    """How well the cheap score currently ranks the run's candidates against their expensive quality.

    Against `full` once at least 3 candidates have it (all signals), else against `short`
    (proxies only). `tau` is in-sample (the weights saw these candidates), `tau_loo` leave-one-out.
    """
    full = quality(candidates, "full", metric, higher_is_better)
    if len(full) >= 3:
        target, expensive, names = "full", full, PROXY_SIGNALS + SHORT_SIGNALS
    else:
        target, expensive, names = "short", quality(candidates, "short", metric, higher_is_better), PROXY_SIGNALS
    table = {c.id: signals(c, spec, metric, higher_is_better) for c in candidates if c.id in expensive}
    table = {cid: s for cid, s in table.items() if s}
    report = {"target": target, "n": len(table), "tau": None, "tau_loo": None, "signal_taus": {}, "weights": {}}
    if len(table) < 3:
        return report
    done = {cid: expensive[cid] for cid in table}
    cheap = CheapScore.fit(table, done, names=names)
    combined = cheap.score(table)
    tau_loo, _ = cross_validated_tau(table, done, names=names)
    report.update(tau=round(kendall([combined[c] for c in done], list(done.values())), 4), tau_loo=round(tau_loo, 4),
                  signal_taus={k: round(v, 4) for k, v in cheap.taus.items()},
                  weights={k: round(v, 4) for k, v in cheap.weights.items()}, fitted=cheap.n_completed >= MIN_COMPLETED)
    return report
