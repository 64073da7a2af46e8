"""Item selection for the downstream suite (issue 23): anchors estimate the full-suite score, beat
uniform subsets on a pool whose items differ in discrimination, and report how reliable they are."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import efficient_benchmarking as bench
from evaluators import item_selection as sel


@pytest.fixture(scope="module")
def pool():
    return bench.synthetic_pool(n_models=40, n_scenarios=6, items_per_scenario=300, seed=1)


def test_full_item_set_with_equal_weights_is_the_full_score(pool):
    anchors = sel.select("uniform", pool.Y, pool.C, pool.scenarios, n=len(pool.scenarios))
    assert len(anchors.items) == len(pool.scenarios)
    np.testing.assert_allclose(sel.estimate_many(anchors, pool.Y[:, list(anchors.items)]),
                               sel.full_score(pool.Y, pool.scenarios))
    assert sel.estimate(anchors, pool.Y[3, list(anchors.items)]) == pytest.approx(
        sel.full_score(pool.Y, pool.scenarios)[3])


def test_full_score_weighs_each_scenario_the_same():
    Y = np.array([[1.0, 1.0, 1.0, 0.0]])  # scenario 0 has three items, scenario 1 one
    assert sel.full_score(Y, np.array([0, 0, 0, 1]))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["uniform", "anchor_points", "irt"])
def test_every_method_gives_about_n_anchors_with_weights_summing_to_one_per_scenario(pool, method):
    anchors = sel.select(method, pool.Y, pool.C, pool.scenarios, n=30, seed=2)
    assert anchors.method == method
    assert len(anchors.items) == 30
    assert sorted(set(anchors.scenarios)) == list(range(6))
    for label in range(6):
        mask = np.asarray(anchors.scenarios) == label
        assert np.asarray(anchors.weights)[mask].sum() == pytest.approx(1.0)
        assert (pool.scenarios[list(np.asarray(anchors.items)[mask])] == label).all()


def test_fewer_requested_items_than_scenarios_still_covers_every_scenario(pool):
    anchors = sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, n=2, seed=0)
    assert sorted(set(anchors.scenarios)) == list(range(6))


def test_anchor_set_round_trips_through_json(pool):
    anchors = sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, n=12, seed=3)
    assert anchors.offsets  # calibrated, so the calibration must survive the trip too
    again = sel.AnchorSet.from_dict(json.loads(json.dumps(anchors.to_dict())))
    assert again == anchors
    scores = pool.Y[:, list(anchors.items)]
    np.testing.assert_array_equal(sel.estimate_many(again, scores), sel.estimate_many(anchors, scores))


def test_selection_is_deterministic_given_the_seed(pool):
    first = sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, n=24, seed=5)
    assert sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, n=24, seed=5) == first
    assert sel.select("uniform", None, None, pool.scenarios, n=24, seed=5) != sel.select(
        "uniform", None, None, pool.scenarios, n=24, seed=6)


def test_unknown_method_is_refused_with_the_list_of_methods(pool):
    with pytest.raises(ValueError, match="uniform, anchor_points, irt"):
        sel.select("anchor-points", pool.Y, pool.C, pool.scenarios, n=10)


def test_invalid_anchor_sets_are_refused():
    with pytest.raises(ValueError, match="sum to"):
        sel.AnchorSet("uniform", (0, 1), (0.5, 0.4), (0, 0))
    with pytest.raises(ValueError, match="repeat"):
        sel.AnchorSet("uniform", (0, 0), (0.5, 0.5), (0, 0))


@pytest.mark.parametrize("method", ["anchor_points", "irt"])
def test_anchors_estimate_the_full_score_better_than_uniform_at_30_items(pool, method):
    truth = sel.full_score(pool.Y, pool.scenarios)
    seeds = range(4)

    def errors(name):
        return np.array([np.abs(sel.cross_validated(name, pool.Y, pool.C, pool.scenarios, 30, seed=seed)
                                - truth).mean() for seed in seeds])

    anchor_errors, uniform_errors = errors(method), errors("uniform")
    assert (anchor_errors < uniform_errors).all(), (anchor_errors, uniform_errors)


def test_cross_validation_never_scores_a_model_with_anchors_it_helped_choose(monkeypatch, pool):
    seen = []
    real_select = sel.select

    def spy(method, Y_sources, C_sources, scenarios, n, seed=0):
        seen.append({tuple(row) for row in np.round(Y_sources, 12)})
        return real_select(method, Y_sources, C_sources, scenarios, n, seed)

    monkeypatch.setattr(sel, "select", spy)
    sel.cross_validated("anchor_points", pool.Y, pool.C, pool.scenarios, 12, folds=5, seed=0)
    rows = [tuple(row) for row in np.round(pool.Y, 12)]
    assert len(seen) == 5
    assert all(sum(row in fitted for fitted in seen) == 4 for row in rows)  # every model left out exactly once


def test_reliability_of_the_full_item_set_is_perfect(pool):
    result = sel.reliability("anchor_points", pool.Y, pool.C, pool.scenarios, n=len(pool.scenarios), draws=3)
    assert isinstance(result, sel.Reliability)
    assert result.pairwise_agreement == 1.0 and result.top_k_agreement == 1.0
    assert result.mean_standard_error == pytest.approx(0.0, abs=1e-12)


def test_reliability_of_a_tiny_subset_is_lower_and_its_estimates_spread(pool):
    result = sel.reliability("uniform", pool.Y, pool.C, pool.scenarios, n=6, draws=10, k=3)
    assert result.pairwise_agreement < 0.95
    assert result.mean_standard_error > 0.005
    assert len(result.standard_error) == len(pool.Y)
    assert json.loads(json.dumps(result.to_dict()))["draws"] == 10


def test_decision_reliability_says_how_often_a_pairwise_decision_stands(pool):
    anchors = sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, n=60, seed=0)
    truth = sel.full_score(pool.Y, pool.scenarios)
    best, worst = int(truth.argmax()), int(truth.argmin())
    draws = sel.bootstrap_estimates(anchors, pool.Y[[best, worst]][:, list(anchors.items)], draws=100, seed=1)
    assert sel.decision_reliability(draws[:, 0], draws[:, 1]) > 0.95  # far apart: the decision stands
    assert sel.decision_reliability(draws[:, 0], draws[:, 1], point_decision=False) < 0.05
    same = sel.bootstrap_estimates(anchors, pool.Y[[best, best]][:, list(anchors.items)], draws=50, seed=1)
    assert sel.decision_reliability(same[:, 0], same[:, 1]) == 0.5  # a model against itself: a coin toss


def test_study_script_runs_on_a_pool_file_and_writes_its_result(tmp_path, capsys):
    small = bench.synthetic_pool(n_models=30, n_scenarios=3, items_per_scenario=120, seed=2)
    small.save(tmp_path / "pool.npz")
    out = tmp_path / "result.json"
    bench.main(["--pool", str(tmp_path / "pool.npz"), "--methods", "uniform", "anchor_points",
                "--sizes", "6", "30", "all", "--repeats", "6", "--draws", "3", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["pool"]["items"] == 360 and result["settings"]["sizes"] == [6, 30, 360]
    anchor = result["methods"]["anchor_points"]
    assert {cell["n"] for cell in anchor["cells"]} == {6, 30, 360}
    assert anchor["cells"][-1]["tau_median"] == pytest.approx(1.0)  # the full suite ranks as itself
    assert [c["n"] for c in anchor["against_uniform"]] == [6, 30]
    assert set(anchor["targets"]) == {"fewer_items", "error_at_100", "beats_uniform"}
    assert anchor["tokens_per_candidate"] <= result["pool"]["full_tokens_per_candidate"]
    printed = capsys.readouterr().out
    assert "efficient_benchmarking:" in printed and ("MET" in printed or "MISSED" in printed)


def test_kmeans_returns_k_non_empty_clusters_even_when_points_repeat():
    points = np.vstack([np.zeros((20, 2)), np.ones((3, 2))])  # e.g. items every source model gets right
    for seed in range(5):
        labels = sel.kmeans(points, 6, np.random.default_rng(seed))
        assert sorted(set(labels.tolist())) == list(range(6))
