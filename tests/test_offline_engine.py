from agents.engine import PlanContext
from agents.offline.blocks import render
from agents.offline.changes import CHANGES, proposals
from agents.offline.engine import OfflineEngine
from agents.records import Candidate
from evaluators.baselines import BASELINES
from evaluators.static_check import static_problems
from evaluators.tasks import get_task
from knowledge.records import Finding
from wire.jobs import EvalResult

SPEC = get_task("mqar").default_spec()


def _baseline(name, accuracy):
    genome, source = BASELINES[name]
    c = Candidate(id=f"b-{name}", run_id="r", task="mqar", title=name, source=source, status="baseline", genome=genome)
    c.evaluations["short"] = EvalResult(job_id="j", candidate_id=c.id, fidelity="short", status="ok",
                                        metrics={"accuracy": accuracy, "heldout_loss": 1.0, "params": 1e5})
    return c


def test_at_least_eight_kinds_of_change_and_all_render_cleanly():
    assert len(CHANGES) >= 8
    seen = set()
    for name in BASELINES:
        for p in proposals(BASELINES[name][0], SPEC):
            seen.add(p.change)
            assert static_problems(render(p.genome)) == []
    assert len(seen) >= 8


def test_plans_are_deterministic_for_a_seed_and_vary_across_seeds():
    parent = _baseline("softmax_attention", 0.2)
    ctx = PlanContext(spec=SPEC, round=1, parent=parent, candidates=[parent])
    a = [OfflineEngine(0).plan(PlanContext(**{**ctx.__dict__, "round": r})).detail for r in range(1, 8)]
    b = [OfflineEngine(0).plan(PlanContext(**{**ctx.__dict__, "round": r})).detail for r in range(1, 8)]
    c = [OfflineEngine(1).plan(PlanContext(**{**ctx.__dict__, "round": r})).detail for r in range(1, 8)]
    assert a == b and a != c


def test_retrieved_failures_lower_the_weight_of_that_change():
    parent = _baseline("softmax_attention", 0.2)
    bad = Finding(id="f", text="short conv failed", kind="failure", task="mqar", change="short_conv")
    good = Finding(id="g", text="gates helped", kind="insight", task="mqar", change="output_gate",
                   evidence={"delta_accuracy": 0.3})
    plain = OfflineEngine(0).change_weights(PlanContext(spec=SPEC, round=1, parent=parent, candidates=[parent]))
    informed = OfflineEngine(0).change_weights(PlanContext(spec=SPEC, round=1, parent=parent, candidates=[parent],
                                                           findings=[(bad, 0.1), (good, 0.1)]))
    assert informed["short_conv"] < plain["short_conv"]
    assert informed["output_gate"] > plain["output_gate"]


def test_analysis_reports_the_real_numbers_against_the_parent():
    parent = _baseline("softmax_attention", 0.20)
    child = _baseline("softmax_attention", 0.85)
    child = child.model_copy(update={"id": "c001", "parent_ids": [parent.id], "change": "short_conv",
                                     "title": "b: short_conv 0 -> 3", "status": "evaluated"})
    second = parent.evaluations["short"].model_copy(update={"metrics": {"accuracy": 0.21, "heldout_loss": 1.0}})
    parent.seeds["short"] = [parent.evaluations["short"], second]      # run twice: the noise floor (about 0.13)
    text, findings = OfflineEngine(0).analyze(child, parent, [parent])
    assert "0.200 to 0.850, accuracy +0.650 at short" in text and "the change improved accuracy" in text
    assert abs(findings[0].evidence["delta_accuracy"] - 0.65) < 1e-9
    failed = child.model_copy(update={"status": "failed", "evaluations": {"check": EvalResult(
        job_id="j", candidate_id="c001", fidelity="check", status="invalid", message="the model is not causal")}})
    text, findings = OfflineEngine(0).analyze(failed, parent, [parent])
    assert findings[0].kind == "failure" and "not causal" in text


def test_static_check_catches_forbidden_code():
    assert any("import of 'subprocess'" in p for p in static_problems("import subprocess\ndef build_model(s): pass\n"))
    assert any("syntax error at line 2" in p for p in static_problems("x = 1\ndef (:\n"))
    assert any("build_model" in p for p in static_problems("x = 1\n"))
