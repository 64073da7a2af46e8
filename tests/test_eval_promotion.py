"""Promotion, the learned cheap score, statistics over seeds, fitness and Pareto fronts, curve extrapolation."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from evaluators import stats
from evaluators.curves import extrapolate, fit_power_law
from evaluators.fidelities import curve_steps
from evaluators.fitness import Objective, fitness, fronts_by_task, pareto_front
from evaluators.promotion import (CheapScore, Rung, cross_validated_tau, short_signals, successive_halving,
                                  top_fraction)


def pool(n=16, seed=0):
    """Candidates with a hidden quality, a good proxy, an inverted proxy and a useless one."""
    rng = np.random.default_rng(seed)
    quality = {f"c{i:02d}": float(q) for i, q in enumerate(rng.random(n))}
    signals = {c: {"snip": q + 0.05 * rng.standard_normal(), "synflow": -q, "naswot": float(rng.random())}
               for c, q in quality.items()}
    return quality, signals


def test_top_fraction_keeps_the_right_number_best_first():
    scores = {f"c{i}": float(i) for i in range(10)}
    assert top_fraction(scores, 0.5) == ["c9", "c8", "c7", "c6", "c5"]
    assert len(top_fraction(scores, 0.25)) == 3                            # ceil(2.5)
    assert top_fraction({"a": 1.0}, 0.1) == ["a"]                          # never empty
    with pytest.raises(ValueError):
        top_fraction(scores, 0.0)


def test_successive_halving_promotes_fractions_and_refits_the_cheap_score():
    quality, signals = pool(16)
    calls = []

    def evaluate(fidelity, ids):
        calls.append((fidelity, len(ids)))
        if fidelity == "full":
            return {c: {"accuracy": quality[c]} for c in ids}
        if fidelity == "short":
            return {c: {"short_quality": quality[c]} for c in ids}
        return {c: signals[c] for c in ids}

    cheap = CheapScore.fit(signals, {c: quality[c] for c in list(quality)[:8]},
                           names=("snip", "synflow", "naswot", "short_quality"))
    record = successive_halving(list(quality), evaluate, cheap,
                                rungs=(Rung("proxy", 0.5), Rung("short", 0.5), Rung("full", 1.0)))
    assert calls == [("proxy", 16), ("short", 8), ("full", 4)]
    assert max(quality, key=quality.get) in record.finished                 # the best one made it through
    assert record.cheap is not None and record.cheap.n_completed == 4
    assert "accuracy" not in record.cheap.weights                           # full results never become signals


def test_cheap_score_weights_follow_kendall_tau_against_full():
    quality, signals = pool(20)
    score = CheapScore.fit(signals, quality, names=("snip", "synflow", "naswot"))
    assert score.weights["synflow"] < 0                                     # the inverted proxy is used inverted
    assert "naswot" not in score.weights                                    # noise is left out
    assert score.taus["synflow"] == pytest.approx(-1.0) and score.taus["snip"] > 0.8
    assert score.tau_vs_full > 0.8
    tau, _ = cross_validated_tau(signals, quality, names=("snip", "synflow", "naswot"))
    assert tau > 0.8
    cold = CheapScore.fit(signals, dict(list(quality.items())[:2]))         # too few finished: priors
    assert cold.n_completed == 2 and cold.weights["synflow"] == 1.0


def test_expert_selection_keeps_complementary_signals_and_drops_redundant_ones():
    rng = np.random.default_rng(1)
    a, b = rng.random(30), rng.random(30)
    quality = {f"c{i}": float(a[i] + b[i]) for i in range(30)}
    signals = {f"c{i}": {"snip": float(a[i]), "naswot": float(b[i]), "synflow": float(a[i] + 1e-3 * rng.random()),
                         "grad_norm": float(rng.random())} for i in range(30)}
    score = CheapScore.fit(signals, quality, names=("snip", "naswot", "synflow", "grad_norm"))
    assert {"naswot"} < set(score.weights) and len({"snip", "synflow"} & set(score.weights)) == 1
    assert "grad_norm" not in score.weights
    single = max(abs(t) for t in score.taus.values())
    assert score.tau_vs_full > single + 0.1                     # two halves of the truth rank better than either


def test_short_signals_include_the_extrapolated_loss():
    steps = curve_steps(100, 20)
    curve = [2.0 * s ** -0.5 + 0.5 for s in steps]
    sig = short_signals({"accuracy": 0.3, "heldout_loss": 1.2}, curve, 100, 1000)
    assert sig["short_quality"] == 0.3 and sig["short_loss"] == 1.2
    assert sig["short_extrapolated_loss"] == pytest.approx(2.0 * 1000 ** -0.5 + 0.5, rel=1e-3)


def test_power_law_fit_recovers_its_parameters_and_falls_back_safely():
    t = np.arange(10, 410, 10.0)
    law = fit_power_law(t, 3.0 * t ** -0.7 + 0.4)
    assert law.fitted and (law.a, law.b, law.c) == pytest.approx((3.0, 0.7, 0.4), rel=1e-3)
    assert not fit_power_law([1, 2], [3.0, 2.0]).fitted                     # too short
    assert extrapolate([2.0] * 10, 100, 1000) == 2.0                        # flat: the last loss
    noisy = [3.0, 2.5, 2.6, 2.2, 2.4, 2.1, 2.3, 2.0, 2.2, 1.9]
    assert extrapolate(noisy, 100, 1000) <= noisy[-1]                       # never above the last loss
    assert math.isnan(extrapolate([], 10, 100))


def test_mean_ci_needs_three_seeds_and_matches_student_t():
    with pytest.raises(ValueError, match="at least 3 seeds"):
        stats.mean_ci([0.5, 0.6])
    values = [0.50, 0.55, 0.53, 0.58]
    ci = stats.mean_ci(values)
    low, high = sps.t.interval(0.95, 3, loc=np.mean(values), scale=sps.sem(values))
    assert (ci.low, ci.high) == pytest.approx((low, high))


def test_better_than_parent_only_beyond_the_interval():
    parent = [0.50, 0.52, 0.51]
    assert stats.difference([0.60, 0.61, 0.62], parent).better
    close = stats.difference([0.52, 0.50, 0.53], parent)
    assert not close.better and not close.worse and close.delta > 0
    over = stats.improvement_over_random(0.9, [0.1, 0.2, 0.3, 0.4])
    assert over.delta == pytest.approx(0.65) and over.beats == 1.0 and over.z > 0


def test_fitness_applies_cost_limits_and_names_the_violation():
    objective = Objective(metric="accuracy", limits={"params": 1e5, "latency_ms_median": 5.0})
    ok = fitness({"accuracy": 0.8, "params": 5e4, "latency_ms_median": 2.0}, objective)
    assert ok.feasible and ok.value == 0.8
    bad = fitness({"accuracy": 0.9, "params": 2e5}, objective)
    assert not bad.feasible and any("params" in v for v in bad.violations) and any("latency" in v for v in bad.violations)
    assert fitness({"heldout_loss": 1.5}, Objective(metric="heldout_loss", higher_is_better=False)).value == -1.5


def test_pareto_front_keeps_exactly_the_non_dominated():
    items = {"small": {"accuracy": 0.5, "params": 10}, "mid": {"accuracy": 0.7, "params": 20},
             "dominated": {"accuracy": 0.6, "params": 25}, "big": {"accuracy": 0.9, "params": 100},
             "tie_worse": {"accuracy": 0.7, "params": 30}, "no_cost": {"accuracy": 1.0}}
    assert pareto_front(items, Objective(costs=("params",))) == ["small", "mid", "big"]
    two = {**items, "fast": {"accuracy": 0.6, "params": 25, "flops": 1}}
    for item in two.values():
        item.setdefault("flops", 100)
    assert "fast" in pareto_front(two, Objective(costs=("params", "flops")))
    fronts = fronts_by_task({"mqar": items, "digits": {"a": {"accuracy": 0.9, "params": 5}}}, {})
    assert fronts == {"mqar": ["small", "mid", "big"], "digits": ["a"]}
