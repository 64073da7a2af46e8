"""The search policy (`agents.search`) and the offline planner built on it: evidence from every evaluation,
tournament parents that may be references, Thompson-sampled proposals, combined changes when single ones stall."""
from __future__ import annotations

import random

import pytest

from agents import search
from agents.engine import PlanContext
from agents.offline.blocks import DEFAULT_GENOME, validate
from agents.offline.engine import GENE_PRIORS, OfflineEngine, genome_hash
from agents.records import Candidate
from evaluators.fitness import Objective
from evaluators.tasks import get_task
from wire.jobs import EvalResult

ACCURACY = Objective(metric="accuracy")
LOSS = Objective(metric="heldout_loss", higher_is_better=False)
SPEC = get_task("mqar").default_spec()


def record(cid: str, genome: dict, accuracy: float | None, status: str = "evaluated", parent: str | None = None,
           loss: float | None = None) -> Candidate:
    ids = {"job_id": f"{cid}-short", "candidate_id": cid}
    result = (EvalResult(status="ok", fidelity="short", metrics={"accuracy": accuracy, "heldout_loss":
                                                                 loss if loss is not None else 2.0 - accuracy}, **ids)
              if accuracy is not None else EvalResult(status="error", fidelity="short", message="boom", **ids))
    return Candidate(id=cid, run_id="r", task="mqar", title=f"{cid}: x", motivation="", change="x", source="",
                     status=status, genome=validate(genome), parent_ids=[parent] if parent else [],
                     evaluations={"short": result})


def recall_population() -> list[Candidate]:
    """Short convolutions make recall easy: every genome with one scores high, whatever else it has."""
    out = []
    rng = random.Random(0)
    for i in range(12):
        genome = {"mixer": rng.choice(["linear", "softmax", "decay"]), "short_conv": rng.choice([0, 3]),
                  "norm": rng.choice(["layernorm", "rmsnorm"]), "ffn": rng.choice(["mlp", "glu"])}
        accuracy = (0.9 if genome["short_conv"] else 0.2) + 0.01 * rng.random()
        out.append(record(f"r-{i:02d}", genome, accuracy, status="reference" if i < 4 else "evaluated"))
    return out


def test_the_gene_model_finds_what_the_best_evaluations_share():
    population = recall_population()
    model = search.GeneModel.fit(search.observations(population, ACCURACY))
    with_conv = {**DEFAULT_GENOME, "short_conv": 3}
    without = {**DEFAULT_GENOME, "short_conv": 0}
    assert model.predict(validate(with_conv)) > model.predict(validate(without)) + 1.0
    assert model.traits(1)[0][0] == "short_conv=3"
    assert "short_conv=3" in search.describe_traits(model)


def test_failed_and_screened_candidates_count_as_evidence_against_their_genes():
    population = recall_population()
    bad = {**DEFAULT_GENOME, "mixer": "conv", "ffn_mult": 4}
    failed = [record(f"f{i}", {**bad, "norm": n}, None, status="failed") for i, n in enumerate(["layernorm", "rmsnorm"])]
    observed = search.observations(population + failed, ACCURACY)
    imputed = [o for o in observed if o.imputed]
    assert len(imputed) == 2 and all(o.quality < min(o2.quality for o2 in observed if not o2.imputed) for o in imputed)
    model = search.GeneModel.fit(observed)
    assert model.predict(validate(bad)) < model.predict(validate(DEFAULT_GENOME))


def test_a_loss_objective_reverses_what_the_model_learns():
    population = [record(f"c{i}", {"short_conv": k}, accuracy=0.5, loss=1.0 if k else 3.0)
                  for i, k in enumerate([0, 3, 0, 3, 4, 0])]
    model = search.GeneModel.fit(search.observations(population, LOSS))
    assert model.predict(validate({"short_conv": 3})) > model.predict(validate({"short_conv": 0}))


def test_random_references_can_be_parents_and_the_novelty_term_spreads_the_choice():
    # the best member is a random reference: a policy that left references out would never pick it
    population = [record("r-00", {"short_conv": 4, "mixer": "decay"}, 0.95, status="reference"),
                  *[record(f"c{i}", {"short_conv": 0, "n_layers": 1 + i % 2}, 0.2 + 0.01 * i) for i in range(9)]]
    winners = [p.id for p in search.choose_parents(population, ACCURACY, 20, "seed", explore=0.0)]
    assert "r-00" in winners
    # "a" is a little better but built on six times, "b" never: quality alone picks "a", the novelty term "b"
    top = [record("a", {"short_conv": 3}, 0.91, status="reference"), record("b", {"short_conv": 4}, 0.90)]
    kids = [record(f"k{i}", {"short_conv": 3, "n_layers": 2}, 0.1, parent="a") for i in range(6)]
    members = search.population(top + kids, ACCURACY)
    assert [m.candidate.id for m in members[:2]] == ["a", "b"]
    assert search.tournament(members[:2], random.Random(0), size=2, explore=0.0).candidate.id == "a"
    assert search.tournament(members[:2], random.Random(0), size=2, explore=0.5).candidate.id == "b"


def test_the_offline_planner_builds_on_a_good_reference_by_taking_what_it_has():
    parent = record("b-linear", {"mixer": "linear", "short_conv": 0}, 0.2, status="baseline")
    reference = record("r-02", {"mixer": "decay", "short_conv": 3, "ffn": "glu"}, 0.99, status="reference")
    others = [record(f"r-0{i}", {"mixer": m, "short_conv": 0}, 0.2, status="reference")
              for i, m in ((3, "softmax"), (4, "conv"))]
    candidates = [parent, reference, *others]
    engine = OfflineEngine(seed=0, objective=ACCURACY)
    plans = [engine.plan(PlanContext(spec=SPEC, round=r, parent=parent, candidates=candidates, objective=ACCURACY))
             for r in range(1, 9)]
    # four evaluations cannot tell which of r-02's genes carry its quality: most plans take some of them
    towards = [p for p in plans if p.change == "combine" and "r-02" in p.detail]
    assert len(towards) >= 4, [p.detail for p in plans]


def test_with_enough_evidence_the_planner_adds_what_the_best_share():
    # what the best share here (RMSNorm) has no prior in GENE_PRIORS: only the evidence can make the planner add it
    rng = random.Random(0)
    population = []
    for i in range(12):
        genome = {"mixer": rng.choice(["linear", "softmax", "decay"]), "norm": ("rmsnorm", "layernorm")[i % 2],
                  "ffn": rng.choice(["mlp", "glu"]), "short_conv": rng.choice([0, 3])}
        population.append(record(f"r-{i:02d}", genome, (0.9 if genome["norm"] == "rmsnorm" else 0.2)
                                 + 0.01 * rng.random(), status="reference"))
    assert "norm=\"rmsnorm\"" not in GENE_PRIORS
    parent = record("b-linear", {"mixer": "linear", "short_conv": 0, "norm": "layernorm"}, 0.2, status="baseline")
    engine = OfflineEngine(seed=0, objective=ACCURACY)
    plans = [engine.plan(PlanContext(spec=SPEC, round=r, parent=parent, candidates=[parent, *population],
                                     objective=ACCURACY)) for r in range(1, 9)]
    assert sum(p.genome["norm"] == "rmsnorm" for p in plans) >= 7, [p.detail for p in plans]
    assert "norm=\"rmsnorm\"" in plans[0].motivation


def test_evidence_overrides_the_reading_list_prior():
    # GENE_PRIORS favours short convolutions; here every genome with one scores low
    assert GENE_PRIORS["short_conv=3"] > 0
    rng = random.Random(1)
    population = []
    for i in range(12):
        genome = {"mixer": rng.choice(["linear", "softmax", "decay"]), "short_conv": (0, 3, 0, 4)[i % 4],
                  "norm": rng.choice(["layernorm", "rmsnorm"])}
        population.append(record(f"r-{i:02d}", genome, (0.2 if genome["short_conv"] else 0.9) + 0.01 * rng.random(),
                                 status="reference"))
    parent = record("b-linear", {"mixer": "linear", "short_conv": 0}, 0.9, status="baseline")
    engine = OfflineEngine(seed=0, objective=ACCURACY)
    plans = [engine.plan(PlanContext(spec=SPEC, round=r, parent=parent, candidates=[parent, *population],
                                     objective=ACCURACY)) for r in range(1, 9)]
    assert sum(p.genome["short_conv"] > 0 for p in plans) <= 1, [p.detail for p in plans]


def test_siblings_on_one_parent_propose_different_genomes():
    population = recall_population()
    parent = population[5]
    engine = OfflineEngine(seed=1, objective=ACCURACY)
    plans = [engine.plan(PlanContext(spec=SPEC, round=3, parent=parent, candidates=population, slot=k, batch=3,
                                     sibling_rank=k, objective=ACCURACY)) for k in range(3)]
    assert len({genome_hash(p.genome) for p in plans}) == 3
    # a recombination that amounts to a single change is the same proposal: siblings never both get it
    reference = record("r-09", {**parent.genome, "mixer": "gated_linear"}, 0.95, status="reference")
    twins = [engine.plan(PlanContext(spec=SPEC, round=4, parent=parent, candidates=population + [reference], slot=k,
                                     batch=6, sibling_rank=k, objective=ACCURACY)) for k in range(6)]
    assert len({genome_hash(p.genome) for p in twins}) == 6


def test_pairs_of_changes_are_offered_once_single_changes_from_a_parent_stall():
    parent = record("p", {"mixer": "linear"}, 0.5)
    engine = OfflineEngine(seed=0, objective=ACCURACY)
    context = PlanContext(spec=SPEC, round=2, parent=parent, candidates=[parent], objective=ACCURACY)
    assert not any("+" in o.change for o in engine.options(validate(parent.genome), context, ACCURACY))
    kids = [record(f"k{i}", {"mixer": "linear", "norm": "rmsnorm", "n_heads": h}, 0.4, parent="p")
            for i, h in enumerate([2, 8])]
    stalled = PlanContext(spec=SPEC, round=3, parent=parent, candidates=[parent, *kids], objective=ACCURACY)
    pairs = [o for o in engine.options(validate(parent.genome), stalled, ACCURACY) if "+" in o.change]
    assert pairs and all(len(o.parts) == 2 and o.parts[0] != o.parts[1] for o in pairs)
    moved = [sum(o.genome[k] != parent.genome[k] for k in o.genome) for o in pairs]
    assert min(moved) == 2 and max(moved) <= 3            # width_depth moves two genes at once


# --- the search benchmark (benchmarks/search_efficiency.py) holds every method to one space ----------------------

def test_random_search_draws_from_exactly_the_space_the_lab_reaches():
    from benchmarks import search_efficiency as bench
    draws = bench.random_draws(40, seed=0)
    assert all(bench.in_space(g) for g in draws) and len({bench.key(g) for g in draws}) == 40
    # from any genome of the space, one change of the lab's catalogue sets any gene to any other value of the space
    # (a feature map only on a kernel mixer, heads and short convolutions not on the convolution mixer: those are
    # reached by switching the mixer first), so the lab can reach every genome random search can draw
    for genome in draws[:25]:
        reached = bench.reachable_in_one_change(genome, SPEC)
        for gene, values in bench.SPACE.items():
            unused = ((gene == "feature_map" and genome["mixer"] not in ("linear", "gated_linear", "decay"))
                      or (gene in ("n_heads", "short_conv") and genome["mixer"] == "conv"))
            assert reached[gene] == (set() if unused else set(values) - {genome[gene]}), (gene, genome)
    # and nothing outside it: the lab's proposals, REA's mutations
    parent = record("p", draws[0], 0.5, status="reference")
    others = [record(f"r{i}", g, 0.1 * i, status="reference") for i, g in enumerate(draws[1:6])]
    engine = bench.SpaceEngine(0, ACCURACY)
    plans = [engine.plan(PlanContext(spec=SPEC, round=r, parent=parent, candidates=[parent, *others],
                                     objective=ACCURACY)) for r in range(1, 13)]
    assert all(bench.in_space(p.genome) for p in plans)
    rng = random.Random(0)
    for genome in draws:
        child = bench.mutate(genome, rng)
        moved = [k for k in bench.SPACE if child[k] != genome[k]]
        assert bench.in_space(child) and len(moved) == 1 and bench.key(child) != bench.key(genome)


def test_the_lab_without_priors_fits_its_gene_model_with_none():
    from unittest import mock

    from benchmarks import search_efficiency as bench
    parent = record("p", {"mixer": "linear"}, 0.5, status="reference")
    seen = {}
    for priors in (True, False):
        with mock.patch.object(search.GeneModel, "fit", wraps=search.GeneModel.fit) as fit:
            bench.SpaceEngine(0, ACCURACY, priors).plan(PlanContext(spec=SPEC, round=1, parent=parent,
                                                                    candidates=[parent], objective=ACCURACY))
        call = fit.call_args
        seen[priors] = dict(call.args[1] if len(call.args) > 1 else call.kwargs.get("priors") or {})
    assert seen == {True: GENE_PRIORS, False: {}}


def test_the_rank_test_says_which_method_needs_fewer_evaluations():
    from benchmarks import search_efficiency as bench
    fewer, more = [3, 4, 5, 6, 8, 9, 21, 5], [12, 15, 21, 21, 9, 18, 21, 14]
    found = bench.rank_test(fewer, more, "less")
    assert found["p"] < 0.01 and found["probability"] == pytest.approx(57 / 64)   # 57 of 64 pairs, ties half
    assert bench.rank_test(more, fewer, "less")["p"] > 0.9
    assert bench.rank_test(fewer, fewer, "less")["probability"] == 0.5
