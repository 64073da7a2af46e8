"""A run whose objective is a loss (`metric = "heldout_loss"`, `higher_is_better = false`) is ranked by that loss
everywhere: the scoring module, parent choice, the agents' context, the run's best in `runs` and `show`.

Unit tests work on `Candidate` records with made-up results in which accuracy and loss disagree;
the last test drives a tiny real run (session API, real sandbox) whose evaluator reports an
accuracy that rises with the loss, so ranking by accuracy would pick the worst candidate.
"""
from __future__ import annotations

import json

import pytest

from agents import scoring
from agents.engine import PlanContext
from agents.llm import context as ctx
from agents.nodes.select import scored
from agents.offline.engine import OfflineEngine
from agents.recorder import load_candidates
from agents.records import Candidate
from archlab.runstore import summarize
from evaluators.baselines import BASELINES
from evaluators.fitness import Objective
from evaluators.harness import evaluate
from evaluators.tasks import get_task
from knowledge.records import Finding
from tests.runs_support import TINY_TASK, archlab, events, only_run
from wire.jobs import EvalResult

LOSS = Objective(metric="heldout_loss", higher_is_better=False)
ACCURACY = Objective(metric="accuracy")
SPEC = get_task("mqar").default_spec()


def result(cid: str, fidelity: str = "short", **metrics) -> EvalResult:
    return EvalResult(job_id=f"{cid}-{fidelity}-0", candidate_id=cid, fidelity=fidelity, status="ok", metrics=metrics)


def candidate(cid: str, accuracy: float, loss: float, status: str = "evaluated", full_loss: float | None = None,
              params: float = 1e5, change: str = "short_conv") -> Candidate:
    evaluations = {"short": result(cid, accuracy=accuracy, heldout_loss=loss, params=params)}
    if full_loss is not None:
        evaluations["full"] = result(cid, "full", accuracy=accuracy, heldout_loss=full_loss, params=params)
    genome = BASELINES["softmax_attention"][0]
    return Candidate(id=cid, run_id="r", task="mqar", title=f"b-softmax: {cid}", source=f"# {cid}\n", status=status,
                     parent_ids=[] if status == "baseline" else ["b-softmax"], change=change,
                     evaluations=evaluations, genome=genome)


def disagreeing() -> list[Candidate]:
    """Accuracy and loss rank these three in opposite orders."""
    return [candidate("hi-acc", 0.9, 2.0), candidate("mid", 0.7, 1.5), candidate("low-loss", 0.5, 1.0)]


def test_scoring_ranks_the_lowest_loss_first_when_the_objective_is_a_loss():
    pool = disagreeing()
    assert [s.candidate.id for s in scoring.ranked(pool, LOSS)] == ["low-loss", "mid", "hi-acc"]
    assert [s.candidate.id for s in scoring.ranked(pool, ACCURACY)] == ["hi-acc", "mid", "low-loss"]
    top = scoring.score(pool[2], LOSS)
    assert (top.value, top.quality, top.fidelity, top.origin) == (1.0, -1.0, "short", "proposal")
    assert scoring.quality(pool[0], LOSS) == -2.0
    assert sorted(pool, key=lambda c: scoring.sort_key(c, LOSS), reverse=True)[0].id == "low-loss"


def test_ties_of_the_metric_go_to_the_lower_held_out_loss():
    tied = [candidate("a", 0.5, 2.0), candidate("b", 0.5, 1.0)]
    assert [s.candidate.id for s in scoring.ranked(tied, ACCURACY)] == ["b", "a"]


def test_the_full_result_beats_the_short_one():
    # trained at full, its (mean) loss replaces the short one: 1.3 at short, 0.9 at full
    promoted = candidate("promoted", 0.5, 1.3, full_loss=0.9)
    short_only = candidate("short-only", 0.5, 1.0)
    assert (scoring.score(promoted, LOSS).value, scoring.score(promoted, LOSS).fidelity) == (0.9, "full")
    assert [s.candidate.id for s in scoring.ranked([short_only, promoted], LOSS)] == ["promoted", "short-only"]
    # a result of the higher rung beats one of the lower even when its number is worse
    survivor = candidate("survivor", 0.5, 1.3, full_loss=1.2)
    assert [s.candidate.id for s in scoring.ranked([short_only, survivor], LOSS)] == ["survivor", "short-only"]
    # two candidates are compared where both were measured
    compared = scoring.compare(short_only, survivor, LOSS)
    assert compared.fidelity == "short" and compared.delta == pytest.approx(-0.3) and compared.gain == pytest.approx(0.3)


def test_parents_rank_by_loss_references_included_and_never_screened_or_over_a_limit():
    pool = disagreeing() + [candidate("b-softmax", 0.95, 1.2, status="baseline"),
                            candidate("r-01", 0.1, 0.5, status="reference"),
                            candidate("screened", 0.1, 0.4, status="screened")]
    # a good random reference is evidence like any other: the search may build on it
    assert [c.id for c in scored(pool, LOSS)] == ["r-01", "low-loss", "b-softmax", "mid", "hi-acc"]
    assert scored(pool, ACCURACY)[0].id == "b-softmax"
    limit = Objective(metric="heldout_loss", higher_is_better=False, limits={"params": 5e4})
    small = candidate("small", 0.2, 1.8, params=1e4)
    assert [c.id for c in scored(pool + [small], limit)] == ["small"]        # the rest break the limit
    assert [c.id for c in scored(pool, limit)][:3] == ["r-01", "low-loss", "b-softmax"]   # nothing feasible: all, ranked


def test_the_best_of_a_run_follows_the_loss_and_says_where_it_came_from():
    pool = disagreeing() + [candidate("b-softmax", 0.95, 0.8, status="baseline"),
                            candidate("r-01", 0.1, 0.5, status="reference")]
    without_references = scoring.best(pool, LOSS, references=False)
    assert (without_references.candidate.id, without_references.origin, without_references.value) == (
        "b-softmax", "baseline", 0.8)
    best = scoring.best(pool, LOSS)          # whatever produced it, labelled
    assert (best.candidate.id, best.origin) == ("r-01", "random reference")
    proposal = scoring.best_proposal(pool, LOSS)
    assert proposal.candidate.id == "low-loss" and proposal.origin == "proposal"
    assert scoring.baselines_beaten(proposal, pool, LOSS) == ([], 1)      # 1.0 loss does not beat 0.8
    assert scoring.best(pool[:3], LOSS).candidate.id == "low-loss"
    assert scoring.best([], LOSS) is None


def test_summarize_reads_the_objective_from_run_json(tmp_path):
    run = tmp_path / "run-1"
    for c in disagreeing():
        (run / "candidates" / c.id).mkdir(parents=True)
        (run / "candidates" / c.id / "candidate.json").write_text(c.model_dump_json())
    settings = {"task": "mqar", "objective": {"metric": "heldout_loss", "higher_is_better": False}}
    (run / "run.json").write_text(json.dumps({"run_id": "run-1", "settings": settings}))
    (run / "events.jsonl").write_text("")
    summary = summarize(run)
    assert summary.objective == Objective(metric="heldout_loss", higher_is_better=False)
    assert (summary.best.candidate.id, summary.best.value) == ("low-loss", 1.0)


def run_twice(baseline: Candidate, spread: float = 0.01) -> Candidate:
    """The baseline with a second run at short, `spread` off in every metric: the run's noise floor."""
    first = baseline.evaluations["short"]
    second = first.model_copy(update={"metrics": {k: v + spread for k, v in first.metrics.items()}})
    baseline.seeds["short"] = [first, second]
    return baseline


def test_the_offline_engine_judges_changes_by_the_loss():
    parent = run_twice(candidate("b-softmax", 0.9, 2.0, status="baseline"))     # a floor of about 0.13
    child = candidate("c001", 0.6, 1.0)           # lower accuracy, much lower loss: better under the objective
    engine = OfflineEngine(0, LOSS)
    text, findings = engine.analyze(child, parent, [parent])
    assert "heldout_loss at short went from 2.000 to 1.000, heldout_loss -1.000 at short (95% interval" in text
    assert text.split("(95% interval")[1].split(";")[0].endswith("better") and "the change improved heldout_loss" in text
    assert "beats 1 of 1 baselines" in text and findings[0].evidence["delta_heldout_loss"] == pytest.approx(-1.0)
    plain = engine.change_weights(PlanContext(spec=SPEC, round=1, parent=parent, candidates=[parent]))
    informed = engine.change_weights(PlanContext(spec=SPEC, round=2, parent=parent, candidates=[parent, child]))
    assert informed["short_conv"] > plain["short_conv"]                       # its loss went down
    remembered = Finding(id="f", text="gates cut the loss", kind="insight", task="mqar", change="output_gate",
                         evidence={"delta_heldout_loss": -0.5, "delta_accuracy": -0.2})
    recalled = engine.change_weights(PlanContext(spec=SPEC, round=1, parent=parent, candidates=[parent],
                                                 findings=[(remembered, 0.1)]))
    assert recalled["output_gate"] > plain["output_gate"]


def test_the_llm_context_lists_candidates_best_first_by_the_loss():
    pool = disagreeing() + [candidate("b-mlp", 0.99, 3.0, status="baseline"),
                            candidate("b-softmax", 0.1, 0.7, status="baseline")]
    tried = ctx.tried_text(pool, objective=LOSS).splitlines()
    assert [line.split()[1] for line in tried] == ["low-loss", "mid", "hi-acc"]
    assert "heldout_loss 1.000" in tried[0]
    baselines = ctx.baselines_text(pool, LOSS).splitlines()
    assert [line.split()[1] for line in baselines] == ["b-softmax", "b-mlp"]
    assert ctx.metrics_line(pool[2], LOSS).startswith("heldout_loss 1.000")
    assert "Quality metric: heldout_loss (lower is better)" in ctx.task_description(SPEC, LOSS)


def rising_accuracy(sandbox, job, jobdir):
    """The real evaluation, except that accuracy is made to rise with the loss: the two rankings disagree."""
    found = evaluate(sandbox, job, jobdir)
    loss = found.metrics.get("heldout_loss")
    if loss is not None and "accuracy" in found.metrics:
        found.metrics["accuracy"] = round(loss / (1.0 + loss), 6)
    return found


def table_ids(shown: str) -> list[str]:
    """The id cell of each row of `show`'s candidate table, in order."""
    ids = []
    for line in shown.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1] and cells[1] != "id":
            ids.append(cells[1])
    return ids


def test_a_loss_run_selects_parents_and_reports_its_best_by_the_loss(tmp_path):
    from archlab.session import drive, open_lab, start_run
    from archlab.settings import load_settings
    settings = load_settings(None, rounds=2, runs_dir=tmp_path, knowledge__embedder="hashing", sandbox__cpus=1,
                             loop__explore=0.0, loop__proxy_rung=False, loop__random_pool=0,
                             objective__metric="heldout_loss", objective__higher_is_better=False,
                             task_options=TINY_TASK)
    run_id, run_dir = start_run(settings)
    with open_lab(settings, run_id, run_dir, evaluator=rising_accuracy) as lab:
        assert drive(lab) == "finished"
    records = {c.id: c for c in load_candidates(run_dir)}
    loss = {cid: c.metric("heldout_loss") for cid, c in records.items()
            if c.status in ("baseline", "evaluated") and c.metric("heldout_loss") is not None}

    collected, selections = [], []          # a proposal chooses among the candidates collected before it
    for event in events(run_dir):
        if event["type"] == "candidate_collected":
            collected.append(event["payload"]["candidate_id"])
        elif event["type"] == "parents_selected":
            assert event["payload"]["visible"] == len(collected)
            pool = sorted((cid for cid in collected if cid in loss), key=lambda cid: (loss[cid], cid))
            selections.append((event["payload"], pool))
    assert len(selections) == 2 * selections[0][0]["batch"]          # two rounds
    for payload, pool in selections:
        assert not payload["explore"]
        assert set(payload["parent_ids"]) == {pool[0]}, (payload, loss)       # the lowest loss, not the top accuracy
        assert payload["ranking"] == pool[:5]
    first_pool = selections[0][1]
    assert max(first_pool, key=lambda cid: records[cid].metric("accuracy")) != first_pool[0]   # the test can tell

    best = min(loss, key=lambda cid: (loss[cid], cid))
    shown = archlab("show", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    assert f"best: {best} (" in shown.stdout and f"heldout_loss {loss[best]:.3f} at short" in shown.stdout
    rows = table_ids(shown.stdout)
    ranked = [cid for cid in rows if cid in loss]
    assert ranked == sorted(loss, key=lambda cid: (loss[cid], cid)), shown.stdout
    listing = archlab("runs", "--runs-dir", str(tmp_path))
    assert listing.returncode == 0 and f"{best} (" in listing.stdout and only_run(tmp_path) == run_dir
