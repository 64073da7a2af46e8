"""The loop's successive halving, seeds, verdicts, random references, objective and Pareto front.

Unit tests work on `Candidate` records with made-up results; the last test drives a whole
tiny run through the real CLI and sandbox with every rung switched on.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from agents import objective, screening, seeds
from agents.nodes.select import scored
from agents.records import Candidate
from archlab.settings import SettingsError, load_settings
from evaluators.fitness import Objective
from evaluators.tasks import get_task
from wire.jobs import EvalResult
from tests.runs_support import archlab, events, only_run

SPEC = get_task("mqar").default_spec(short_steps=20, full_steps=200)


def result(cid: str, fidelity: str, status: str = "ok", curve=None, **metrics) -> EvalResult:
    return EvalResult(job_id=f"{cid}-{fidelity}-0", candidate_id=cid, fidelity=fidelity, status=status,
                      metrics=metrics, curve=curve or [])


def candidate(cid: str, status: str = "evaluated", **evaluations: EvalResult) -> Candidate:
    return Candidate(id=cid, run_id="r", task="mqar", title=cid, source=f"# {cid}\n", status=status,
                     parent_ids=["b-softmax"], evaluations=evaluations)


def population(n: int = 8, seed: int = 0, full: int = 0) -> list[Candidate]:
    """Candidates whose naswot tracks quality, whose synflow runs against it, with short and (some) full runs."""
    rng = np.random.default_rng(seed)
    out = []
    for i, q in enumerate(rng.random(n)):
        cid = f"c{i:02d}"
        evaluations = {
            "proxy": result(cid, "proxy", naswot=float(q + 0.01 * rng.standard_normal()), synflow=float(-q),
                            params=1000.0 + i),
            "short": result(cid, "short", accuracy=float(q * 0.5), heldout_loss=float(3 - q)),
        }
        if i < full:
            evaluations["full"] = result(cid, "full", accuracy=float(q))
        out.append(candidate(cid, **evaluations))
    return out


def test_the_proxy_rung_learns_the_signal_that_tracks_quality_and_screens_the_rest():
    pool = population(8)
    best = max(pool, key=lambda c: c.metric("accuracy"))
    worst = min(pool, key=lambda c: c.metric("accuracy"))
    high = screening.rung_decision(pool, best.id, "proxy", 0.5, SPEC)
    low = screening.rung_decision(pool, worst.id, "proxy", 0.5, SPEC)
    assert high.target == "short"                    # 8 short results: fitted against the run's own short runs
    assert high.weights and all(w < 0 for n, w in high.weights.items() if n == "synflow")  # inverted: used reversed
    assert (high.rank, high.promoted) == (1, True) and high.keep == 4 and high.pool == 8
    assert (low.rank, low.promoted) == (8, False)


def test_before_enough_results_the_rungs_use_priors_and_the_short_rung_ranks_by_the_short_run():
    pool = population(3)
    decision = screening.rung_decision(pool, pool[0].id, "proxy", 1.0, SPEC)
    assert decision.target == "prior" and decision.promoted              # keep 1.0 promotes everyone
    short = {c.id: screening.rung_decision(pool, c.id, "short", 1 / 3, SPEC) for c in pool}
    by_accuracy = sorted(pool, key=lambda c: -c.metric("accuracy"))
    assert [short[c.id].rank for c in by_accuracy] == [1, 2, 3]
    assert [short[c.id].promoted for c in by_accuracy] == [True, False, False]
    with pytest.raises(ValueError, match="no ok proxy result"):
        screening.rung_decision(pool + [candidate("x")], "x", "proxy", 0.5, SPEC)


def test_a_loss_objective_ranks_the_lowest_loss_first():
    pool = population(3)
    decisions = {c.id: screening.rung_decision(pool, c.id, "short", 1 / 3, SPEC, "heldout_loss", False) for c in pool}
    lowest = min(pool, key=lambda c: c.metric("heldout_loss"))
    assert decisions[lowest.id].rank == 1 and decisions[lowest.id].promoted
    assert sum(d.promoted for d in decisions.values()) == 1


def test_tau_is_reported_against_full_once_three_candidates_have_it():
    short_only = screening.tau_report(population(8, full=0), SPEC)
    assert short_only["target"] == "short" and short_only["n"] == 8 and short_only["tau_loo"] > 0.5
    with_full = screening.tau_report(population(8, full=6), SPEC)
    assert with_full["target"] == "full" and with_full["n"] == 6
    assert with_full["fitted"] and with_full["tau"] > 0.6
    assert screening.tau_report(population(2), SPEC)["tau"] is None       # too few to rank


def test_seeds_are_averaged_with_an_interval_and_one_failed_seed_fails_the_whole():
    runs = [result("c", "full", accuracy=a, heldout_loss=1.0, curve=[2.0, 1.0]) for a in (0.50, 0.52, 0.54)]
    merged = seeds.aggregate(runs, "accuracy")
    assert merged.ok and merged.metrics["accuracy"] == pytest.approx(0.52) and merged.metrics["seeds"] == 3
    assert merged.metrics["accuracy_ci_low"] < 0.52 < merged.metrics["accuracy_ci_high"]
    assert merged.curve == [2.0, 1.0]
    broken = seeds.aggregate(runs[:1] + [result("c", "full", status="error")], "accuracy")
    assert broken.status == "error" and broken.message.startswith("seed 1 of 2")


def test_better_than_the_parent_only_beyond_the_interval():
    assert seeds.verdict([0.80, 0.81, 0.82], [0.50, 0.51, 0.52])["verdict"] == "better"
    assert seeds.verdict([0.50, 0.60, 0.55], [0.52, 0.57, 0.51])["verdict"] == "not distinguishable"
    assert seeds.verdict([2.0, 2.1, 2.05], [1.0, 1.1, 1.05], higher_is_better=False)["verdict"] == "worse"


def test_cost_limits_make_candidates_infeasible_and_keep_them_from_being_parents():
    small = candidate("small", check=result("small", "check", params=1e4), short=result("small", "short", accuracy=0.6))
    large = candidate("large", check=result("large", "check", params=1e6), short=result("large", "short", accuracy=0.9))
    limit = Objective(metric="accuracy", limits={"params": 1e5}, costs=("params",))
    for c in (small, large):
        objective.apply(c, limit)
    assert (small.feasible, large.feasible) == (True, False) and "params" in large.violations[0]
    assert [c.id for c in scored([small, large], limit)] == ["small"]     # the better one breaks the limit
    objective.apply(large, Objective(metric="accuracy"))
    assert [c.id for c in scored([small, large], Objective(metric="accuracy"))] == ["large", "small"]


def test_the_pareto_front_is_written_per_task_and_notices_changes(tmp_path):
    def make(cid, params, accuracy, status="evaluated"):
        return candidate(cid, status, check=result(cid, "check", params=params),
                         short=result(cid, "short", accuracy=accuracy))
    pool = [make("a", 100, 0.5), make("b", 200, 0.7), make("c", 300, 0.6), make("r", 50, 0.9, "reference")]
    front, changed = objective.write_front(tmp_path, "mqar", pool, Objective())
    assert [p["id"] for p in front] == ["a", "b"] and changed       # c is dominated by b; r is a yardstick
    _, again = objective.write_front(tmp_path, "mqar", pool, Objective())
    assert not again
    kept = json.loads((tmp_path / "pareto.json").read_text())
    assert kept["mqar"]["front"][1] == {"id": "b", "accuracy": 0.7, "fidelity": "short", "params": 200,
                                        "feasible": None}


@pytest.mark.parametrize("setting, message", [
    ({"loop__full_seeds": 2}, "full_seeds"),
    ({"loop__keep_proxy": 0}, "keep_proxy"),
    ({"objective__limits": {"latency": 3}}, "unknown cost latency"),
    ({"objective__metric": "bleu"}, "objective.metric"),
    ({"objective__metric": "heldout_loss", "objective__higher_is_better": True}, "higher_is_better"),
])
def test_bad_screening_and_objective_settings_are_refused(setting, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(**setting)


def events_of(log: list[dict], kind: str) -> list[dict]:
    return [e["payload"] for e in log if e["type"] == kind]


def test_a_run_screens_trains_over_seeds_judges_against_the_parent_and_random_and_keeps_a_front(tmp_path):
    extra = {"ARCHLAB_LOOP__PROXY_RUNG": "true", "ARCHLAB_LOOP__KEEP_PROXY": "0.5",
             "ARCHLAB_LOOP__PROMOTE_FRACTION": "1.0", "ARCHLAB_LOOP__RANDOM_POOL": "1"}
    out = archlab("run", "--rounds", "2", "--runs-dir", str(tmp_path), extra_env=extra, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = only_run(tmp_path)
    log = events(run_dir)
    started = [e["payload"] for e in log if e["type"] == "job_started"]
    records = {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("candidates/*/candidate.json")}
    assert records["r-01"]["status"] == "reference"

    rungs = [e["payload"] for e in log if e["type"] == "promotion"]
    proxy_rung = [p for p in rungs if p["rung"] == "proxy"]
    proposals = {e["candidate_ids"][0]: e for e in events_of(log, "parents_selected")}
    assert {e["batch"] for e in proposals.values()} == {2}   # two workers on the test machine: two per round
    assert {p["candidate_id"] for p in proxy_rung} == {"c001", "c002", "c003", "c004"}
    collected = [e["candidate_id"] for e in events_of(log, "candidate_collected")]
    # each decision reads the run as it stood when its branch was proposed (never a branch in flight), plus itself
    fitted = []
    for decision in proxy_rung:
        seen = collected[:proposals[decision["candidate_id"]]["visible"]]
        trained = [cid for cid in seen if "short" in records[cid]["evaluations"]]
        if "cold start" in decision["reason"]:
            assert len(trained) < 5 and decision["promoted"]     # too few to fit the score: nobody is screened
        else:
            fitted.append(decision)
            assert decision["pool"] == sum("proxy" in records[cid]["evaluations"] for cid in seen) + 1
    # the first two proposals see round 0 only (3 baselines + 1 random reference): nobody is screened on priors
    assert all("cold start" in p["reason"] for p in proxy_rung if p["candidate_id"] in ("c001", "c002"))
    second = fitted
    assert second and all(p["target"] in ("short", "full") for p in second)
    for decision in second:                          # top half of everything that reached the proxy rung goes on
        assert decision["promoted"] == (decision["rank"] <= decision["keep"])
        assert decision["keep"] == -(-decision["pool"] // 2)
        trained = any(j["candidate_id"] == decision["candidate_id"] and j["fidelity"] == "short" for j in started)
        reused = any(h["candidate_id"] == decision["candidate_id"] and h["fidelity"] == "short"
                     for h in events_of(log, "cache_hit"))          # a functional twin's result stands for it
        assert (trained or reused) == decision["promoted"]
        assert records[decision["candidate_id"]]["status"] == ("evaluated" if decision["promoted"] else "screened")

    for cid, record in records.items():              # every full evaluation: 3 seeds, mean with an interval
        if "full" not in record["evaluations"]:
            continue
        full_jobs = [j for j in started if j["candidate_id"] == cid and j["fidelity"] == "full"]
        twin = any(h["candidate_id"] == cid and h["fidelity"] == "full" for h in events_of(log, "cache_hit"))
        assert sorted(j["seed"] for j in full_jobs) == ([] if twin else [0, 1, 2]), cid   # a twin's seeds stand for it
        metrics = record["evaluations"]["full"]["metrics"]
        assert metrics["seeds"] == 3 and metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]
    promoted = [p["candidate_id"] for p in proxy_rung if p["promoted"]]
    for cid in promoted:
        parent = records[cid]["parent_ids"][0]
        assert "full" in records[parent]["evaluations"], "the parent is trained at full to be compared"
        comparison = records[cid]["comparison"]
        assert comparison["parent_id"] == parent and comparison["verdict"] in (
            "better", "worse", "not distinguishable")
        assert comparison["low"] <= comparison["delta"] <= comparison["high"]
        assert records[cid]["over_random"]["fidelity"] == "full" and records[cid]["over_random"]["pool"] == 1
    taus = [e["payload"] for e in log if e["type"] == "cheap_score"]
    assert taus and taus[-1]["target"] == "full" and taus[-1]["tau"] is not None

    front = json.loads((run_dir / "pareto.json").read_text())["mqar"]["front"]
    assert front and all(p["id"] in records and records[p["id"]]["status"] in ("baseline", "evaluated") for p in front)
    shown = archlab("show", run_dir.name, "--runs-dir", str(tmp_path)).stdout
    assert "Kendall tau" in shown and "Pareto front (mqar" in shown and "full (95% CI)" in shown
