"""Multi-fidelity promotion: successive halving from `proxy` to `short` to `full`, ranked by a learned cheap score.

A candidate is promoted to the next, more expensive fidelity only while it stays in the top
fraction of its rung (`Rung.keep`; successive halving, Jamieson & Talwalkar 2016). What ranks
candidates before they are trained to the end is the `CheapScore`: a weighted sum of the
candidates' *ranks* on each cheap signal (the zero-cost proxies of `evaluators.proxies`, and
once a candidate has one, its `short` run: held-out quality and loss, and the full-budget
loss extrapolated from its curve by `evaluators.curves`).

The weights are re-fitted from the candidates that finished `full`, in the spirit of a
dynamic ensemble of low-fidelity experts (Zhao et al., "Dynamic Ensemble of Low-fidelity
Experts: Mitigating NAS Cold-Start", AAAI 2023): each signal's weight is
sign(tau) * max(|tau| - TAU_FLOOR, 0)^POWER, tau being its Kendall rank correlation with
full-fidelity quality over the finished candidates (`scipy.stats.kendalltau`). A signal that
ranks candidates the wrong way round gets a negative weight; one no better than noise gets
none; the best experts dominate. Before `MIN_COMPLETED` candidates have finished, the
signals' prior directions (`PRIORS`) are used with equal weight. `CheapScore.tau_vs_full` is
the fitted score's Kendall tau against full quality on the finished candidates (in-sample);
`cross_validated_tau` gives the honest, leave-one-out figure.

Host side, numbers only: callers pass metrics per candidate id; nothing here runs a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from evaluators.curves import extrapolate

TAU_FLOOR = 0.1       # |tau| at or below this is treated as noise: weight 0
POWER = 2.0           # weight = (|tau| - floor)^POWER: lets the best-correlated signals dominate
MIN_COMPLETED = 5     # finished candidates needed before weights are fitted rather than prior
MIN_GAIN = 0.03       # an extra signal joins the ensemble only if it raises the fitted tau at least this much (n=24: ~4 pairs)

# cheap signals and their prior direction (+1: higher predicts better quality)
PRIORS: dict[str, float] = {
    "synflow": 1.0, "snip": 1.0, "grad_norm": 1.0, "naswot": 1.0, "wpca": 1.0, "erf": 1.0,
    "params": 1.0, "flops": 1.0, "activation_bytes": 1.0,
    "short_quality": 1.0, "short_loss": -1.0, "short_extrapolated_loss": -1.0,
}
PROXY_SIGNALS = ("synflow", "snip", "grad_norm", "naswot", "wpca", "erf", "params", "flops", "activation_bytes")
SHORT_SIGNALS = ("short_quality", "short_loss", "short_extrapolated_loss")


def short_signals(metrics: Mapping[str, float], curve: Sequence[float], short_steps: int, full_steps: int,
                  quality_metric: str = "accuracy") -> dict[str, float]:
    """The cheap signals of one `short` result: its quality, held-out loss, and extrapolated full loss."""
    out = {}
    if quality_metric in metrics:
        out["short_quality"] = float(metrics[quality_metric])
    if "heldout_loss" in metrics:
        out["short_loss"] = float(metrics["heldout_loss"])
    if curve:
        predicted = extrapolate(curve, short_steps, full_steps)
        if math.isfinite(predicted):
            out["short_extrapolated_loss"] = predicted
    return out


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b, 0 where undefined (fewer than 3 points, or a constant side)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    tau = stats.kendalltau(x, y).statistic
    return float(tau) if math.isfinite(tau) else 0.0


def _rank_table(table: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per signal, each candidate's rank in [0, 1] among those that have it (ties averaged); missing: 0.5."""
    ids = list(table)
    ranked: dict[str, dict[str, float]] = {cid: {} for cid in ids}
    for name in names:
        have = [cid for cid in ids if name in table[cid] and math.isfinite(table[cid][name])]
        if len(have) < 2:
            for cid in ids:
                ranked[cid][name] = 0.5
            continue
        r = stats.rankdata([table[cid][name] for cid in have])
        for cid, value in zip(have, r):
            ranked[cid][name] = (value - 1) / (len(have) - 1)
        for cid in ids:
            ranked[cid].setdefault(name, 0.5)
    return ranked


@dataclass
class CheapScore:
    """A rank-weighted ensemble of cheap signals; `fit` learns its weights from finished candidates."""

    weights: dict[str, float]
    names: tuple[str, ...] = tuple(PRIORS)                 # the signals it considers (weights may be 0)
    taus: dict[str, float] = field(default_factory=dict)   # each signal's tau vs full on the finished candidates
    tau_vs_full: float = math.nan                          # the combined score's tau vs full (in-sample)
    n_completed: int = 0

    @classmethod
    def prior(cls, names: Sequence[str] = tuple(PRIORS)) -> "CheapScore":
        return cls({n: PRIORS.get(n, 1.0) for n in names}, tuple(names))

    @classmethod
    def fit(cls, signals: Mapping[str, Mapping[str, float]], quality: Mapping[str, float],
            names: Sequence[str] | None = None, min_completed: int = MIN_COMPLETED,
            tau_floor: float = TAU_FLOOR, power: float = POWER) -> "CheapScore":
        """Weights from the candidates in `quality` (full-fidelity, higher is better) that also have signals."""
        names = tuple(names) if names is not None else tuple(n for n in PRIORS
                                                             if any(n in s for s in signals.values()))
        done = [cid for cid in quality if cid in signals and math.isfinite(quality[cid])]
        if len(done) < min_completed:
            return cls({n: PRIORS.get(n, 1.0) for n in names}, names, n_completed=len(done))
        taus, weights = {}, {}
        for name in names:
            have = [cid for cid in done if name in signals[cid] and math.isfinite(signals[cid][name])]
            tau = kendall([signals[c][name] for c in have], [quality[c] for c in have]) if len(have) >= 3 else 0.0
            taus[name] = tau
            strength = max(abs(tau) - tau_floor, 0.0) ** power
            if strength > 0:
                weights[name] = math.copysign(strength, tau)
        if weights:
            weights = _select_experts(weights, {c: signals[c] for c in done}, {c: quality[c] for c in done})
        score = cls(weights, names, taus, n_completed=len(done))
        if not weights:                     # nothing beats noise yet: keep the priors, report the taus
            score.weights = {n: PRIORS.get(n, 1.0) for n in names}
        combined = score.score({c: signals[c] for c in done})
        score.tau_vs_full = kendall([combined[c] for c in done], [quality[c] for c in done])
        return score

    def score(self, table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """{candidate id: combined score} over the candidates in `table` (ranks are relative to them)."""
        names = [n for n, w in self.weights.items() if w != 0]
        if not names:
            return {cid: 0.0 for cid in table}
        ranks = _rank_table(table, names)
        total = sum(abs(self.weights[n]) for n in names)
        return {cid: sum(self.weights[n] * ranks[cid][n] for n in names) / total for cid in table}


def _select_experts(weights: dict[str, float], table: Mapping[str, Mapping[str, float]],
                    quality: Mapping[str, float]) -> dict[str, float]:
    """Greedy forward selection: start from the strongest signal, add the one that raises the combined
    score's Kendall tau on the finished candidates the most, stop when none raises it by `MIN_GAIN`.

    Many weak signals that mostly measure model size otherwise outvote one strong signal; the
    selection is part of the fit, so a leave-one-out evaluation judges it too.
    """
    ids = list(quality)
    target = [quality[c] for c in ids]

    def tau_of(names: list[str]) -> float:
        scores = CheapScore({n: weights[n] for n in names}).score({c: table[c] for c in ids})
        return kendall([scores[c] for c in ids], target)

    remaining = sorted(weights, key=lambda n: -abs(weights[n]))
    chosen = [remaining.pop(0)]
    best = tau_of(chosen)
    while remaining:
        gains = {n: tau_of(chosen + [n]) for n in remaining}
        name = max(remaining, key=lambda n: (gains[n], abs(weights[n])))
        if gains[name] < best + MIN_GAIN:
            break
        chosen.append(name)
        remaining.remove(name)
        best = gains[name]
    return {n: weights[n] for n in chosen}


def cross_validated_tau(signals: Mapping[str, Mapping[str, float]], quality: Mapping[str, float],
                        names: Sequence[str] | None = None, **fit_options) -> tuple[float, dict[str, float]]:
    """(Kendall tau, scores): each finished candidate scored by a CheapScore fitted without it (leave-one-out)."""
    done = [cid for cid in quality if cid in signals]
    scores = {}
    for cid in done:
        others = {c: quality[c] for c in done if c != cid}
        model = CheapScore.fit(signals, others, names=names, **fit_options)
        scores[cid] = model.score({c: signals[c] for c in done})[cid]
    return kendall([scores[c] for c in done], [quality[c] for c in done]), scores


def top_fraction(scores: Mapping[str, float], keep: float, minimum: int = 1) -> list[str]:
    """The ceil(keep * n) best ids (ties broken by id, so the choice is reproducible), best first."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} must be in (0, 1]")
    count = min(len(scores), max(minimum, math.ceil(keep * len(scores))))
    ordered = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return ordered[:count]


@dataclass(frozen=True)
class Rung:
    fidelity: str     # "proxy" | "short" | "full"
    keep: float       # share of this rung's candidates promoted to the next


DEFAULT_RUNGS = (Rung("proxy", 0.5), Rung("short", 0.5), Rung("full", 1.0))


@dataclass
class HalvingRecord:
    """What successive halving did: per rung, who was scored, their scores, who went on."""

    rungs: list[dict] = field(default_factory=list)
    cheap: CheapScore | None = None

    @property
    def finished(self) -> list[str]:
        return list(self.rungs[-1]["kept"]) if self.rungs else []


def successive_halving(candidates: Sequence[str],
                       evaluate: Callable[[str, list[str]], Mapping[str, Mapping[str, float]]],
                       cheap: CheapScore, rungs: Sequence[Rung] = DEFAULT_RUNGS,
                       quality_metric: str = "accuracy") -> HalvingRecord:
    """Run `rungs` over `candidates`; `evaluate(fidelity, ids)` returns {id: signals} at that fidelity.

    At every rung but the last, survivors are ranked by `cheap` over all the signals gathered
    so far (proxies, then short signals) and the top `keep` share goes on. At the last rung
    (`full`), `evaluate` returns the quality metric; the cheap score is re-fitted on it, and
    the re-fitted score is in `HalvingRecord.cheap` for the next round.
    """
    record = HalvingRecord()
    gathered: dict[str, dict[str, float]] = {cid: {} for cid in candidates}   # cheap signals only
    alive = list(candidates)
    quality: dict[str, float] = {}
    for i, rung in enumerate(rungs):
        results = evaluate(rung.fidelity, alive)
        if i == len(rungs) - 1:             # the expensive rung: its metrics never become cheap signals
            quality = {cid: float(m[quality_metric]) for cid, m in results.items()
                       if quality_metric in m and math.isfinite(m[quality_metric])}
            kept = top_fraction(quality, rung.keep) if quality else []
            record.rungs.append({"fidelity": rung.fidelity, "scored": alive, "scores": quality, "kept": kept})
            break
        for cid, metrics in results.items():
            gathered[cid].update(metrics)
        scores = cheap.score({cid: gathered[cid] for cid in alive if cid in results})
        kept = top_fraction(scores, rung.keep) if scores else []
        record.rungs.append({"fidelity": rung.fidelity, "scored": alive, "scores": scores, "kept": kept})
        alive = kept
    if quality:
        record.cheap = CheapScore.fit(gathered, quality, names=cheap.names)
    return record
