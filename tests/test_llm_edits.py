"""Edits instead of rewrites, changes named in the task's search space, and what the agents see of the run's dynamics.

Every test runs the real engine and the real `openai` client over HTTP against the strict fake
endpoint on loopback (each recorded answer must be used, nothing unrecorded may arrive): the
coder's SEARCH/REPLACE edits applied to the parent; an edit that does not apply sent back with
the exact reason and the repaired answer applied; the whole module asked for when edits keep
failing; a planner that names a change of the space, rendered into a module that passes the
sandbox check with no coder call; the plateau notice; the analyst's learning curves and noise floor.
"""
from __future__ import annotations

import json
import re

import pytest

from agents import scoring
from agents.llm import context as ctx
from agents.llm.edits import Edit, apply_edits, read_edits
from agents.llm.fake import Answer, FakeEndpoint
from agents.offline.blocks import render as render_genome
from tests.llm_support import (ANALYSIS, PLAN, THE_PLAN, baselines, child, context, engine, fenced, module, result)

pytestmark = pytest.mark.timeout(60)


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


NARROWER = block('CONFIG = {"d_model": 64,', 'CONFIG = {"d_model": 40,')
WRONG = block('CONFIG = {"d_model": 65,', 'CONFIG = {"d_model": 40,')     # no such line in the parent
AMBIGUOUS = block("        super().__init__()", "        super().__init__()  # edited")


def parent():
    return next(c for c in baselines() if c.id == "b-softmax")


def events(lab, type):
    return [e.payload for e in lab.logged() if e.type == type]


def test_the_coders_edits_are_applied_to_the_parent(tmp_path):
    answer = Answer.text(f"Narrowed the model.\n{NARROWER}", expect='CONFIG = {"d_model": 64,')
    with FakeEndpoint({"coder-m": [answer]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        source = eng.code(THE_PLAN, parent(), context().spec)
        system = fake.received[0].body["messages"][0]["content"]
    assert source == module(40)
    assert "<<<<<<< SEARCH" in system and "not with the whole module" in system
    assert events(lab, "code_answer") == [{"purpose": "code", "call_id": "coder-1", "form": "edits", "edits": 1,
                                           "failed": 0, "fallback": False}]


@pytest.mark.parametrize("bad, reason", [
    (WRONG, r"edit 1: its SEARCH text was not found in the module; the closest line of the module is line 12: "
            r"`CONFIG = {\"d_model\": 64,"),
    (AMBIGUOUS, "edit 1: its SEARCH text was found 4 times (at lines"),
])
def test_an_edit_that_does_not_apply_goes_back_with_the_reason_and_the_repair_applies(tmp_path, bad, reason):
    answers = [Answer.text(bad), Answer.text(NARROWER, expect="Your edits could not be applied")]
    with FakeEndpoint({"coder-m": answers}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        source = eng.code(THE_PLAN, parent(), context().spec)
        sent_back = fake.received[1].body["messages"][-1]["content"]
    assert source == module(40)
    assert re.search(re.escape(reason) if bad is AMBIGUOUS else reason, sent_back), sent_back
    failed = events(lab, "edit_failed")
    assert len(failed) == 1 and failed[0]["will_retry"] and failed[0]["problems"][0] in sent_back
    assert events(lab, "code_answer")[0]["failed"] == 1 and events(lab, "code_answer")[0]["form"] == "edits"
    unusable = [e for e in events(lab, "llm_error") if e["kind"] == "unusable_answer"]
    assert [e["call_id"] for e in unusable] == ["coder-1"]          # the failed answer is classified, not taken


def test_edits_that_keep_failing_fall_back_to_the_whole_module(tmp_path):
    answers = [Answer.text(WRONG)] * 2 + [Answer.text(fenced(module(40)), expect="Write the whole new module now")]
    with FakeEndpoint({"coder-m": answers}) as fake:
        eng, lab = engine(fake.url, tmp_path, edit_attempts=1)
        source = eng.code(THE_PLAN, parent(), context().spec)
    assert source == module(40)
    assert [e["will_retry"] for e in events(lab, "edit_failed")] == [True, False]
    answered = events(lab, "code_answer")
    assert answered == [{"purpose": "code", "call_id": "coder-3", "form": "module", "edits": 0, "failed": 0,
                         "fallback": True}]


def test_the_fixer_edits_the_failing_module(tmp_path):
    failing = module(44)
    fix = "Set the width back to one the heads divide.\n" + block('CONFIG = {"d_model": 44,', 'CONFIG = {"d_model": 40,')
    failure = result("c001", "check", "error", "RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    with FakeEndpoint({"coder-m": [Answer.text(fix, expect="copied exactly from it")]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        plan, source = eng.fix(THE_PLAN, failing, failure, 1, parent=parent(), spec=context().spec)
    assert source == module(40) and plan.detail.endswith("fix 1: Set the width back to one the heads divide.")
    assert events(lab, "code_answer")[0]["purpose"] == "fix 1"


def test_the_module_protocol_still_asks_for_the_whole_module(tmp_path):
    with FakeEndpoint({"coder-m": [Answer.text(fenced(module(40)), expect="Write the whole new module now")]}) as fake:
        eng, lab = engine(fake.url, tmp_path, coder_answer="module")
        assert eng.code(THE_PLAN, parent(), context().spec) == module(40)
    assert events(lab, "code_answer")[0]["form"] == "module" and not events(lab, "code_answer")[0]["fallback"]


SPACE_PLAN = {**PLAN, "space_change": [{"gene": "short_conv", "value": "3"}]}


def test_a_planned_change_of_the_space_is_rendered_into_a_module_that_passes_check(tmp_path, run_source):
    with FakeEndpoint({"planner-m": [Answer.json(SPACE_PLAN, expect='"gene": "short_conv", "value": 3')]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        plan = eng.plan(context())
        sent = fake.received[0].text
        source = eng.code(plan, parent(), context().spec)        # no coder answer is recorded: none may be asked
    assert "search space this task declares: sequence-blocks" in sent and '"space_change"' in sent
    assert plan.genome == {**parent().genome, "short_conv": 3} and "space change: short_conv=3" in plan.detail
    assert source == render_genome(plan.genome, title=plan.title)
    assert events(lab, "code_answer") == [{"purpose": "code", "call_id": "", "form": "space", "edits": 0,
                                           "failed": 0, "fallback": False}]
    checked = run_source(source)
    assert checked.status == "ok", checked.message


def test_a_space_change_the_space_refuses_goes_back_with_the_reason(tmp_path):
    bad = {**PLAN, "space_change": [{"gene": "num_experts", "value": 4}]}
    with FakeEndpoint({"planner-m": [Answer.json(bad), Answer.json(PLAN, expect="does not have; its genes are")]}) as f:
        eng, lab = engine(f.url, tmp_path)
        plan = eng.plan(context())
    assert plan.genome is None and plan.change == "short_conv"          # the repaired answer: a change in words
    problems = [e["message"] for e in events(lab, "llm_error") if e["kind"] == "unusable_answer"]
    assert problems and "gene 'num_experts'" in problems[0] and "short_conv" in problems[0]


def test_a_space_change_refused_to_the_end_leaves_the_plan_in_words(tmp_path):
    """What a small model did: it named a gene the space lacks in every answer. The plan is not lost: on the last
    repair its words are taken, without the space change, for the coder to write."""
    bad = {**PLAN, "space_change": [{"gene": "one-gene", "value": "x"}]}
    with FakeEndpoint({"planner-m": [Answer.json(bad)] * 3}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        plan = eng.plan(context())
    assert plan.genome is None and plan.change == "short_conv"
    assert "its space_change was dropped: space_change names the gene 'one-gene'" in plan.detail
    assert len([e for e in events(lab, "llm_error") if e["kind"] == "unusable_answer"]) == 2


def test_the_planner_schema_lets_a_space_change_name_only_the_spaces_genes_and_offered_values(tmp_path):
    """An endpoint that turns the schema into a grammar (llama.cpp) cannot produce the small model's 'one-gene'."""
    with FakeEndpoint({"planner-m": [Answer.json(SPACE_PLAN)]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        eng.plan(context())
        sent = fake.received[0].body["response_format"]
    schema = (sent.get("json_schema") or {}).get("schema") or sent["schema"]
    items = schema["properties"]["space_change"]["items"]["anyOf"]
    offered = {item["properties"]["gene"]["enum"][0]: item["properties"]["value"]["enum"] for item in items}
    assert set(offered) <= set(parent().genome) and "one-gene" not in offered and "short_conv" in offered
    assert parent().genome["short_conv"] in offered["short_conv"] and 3 in offered["short_conv"]
    assert all(item["additionalProperties"] is False and item["required"] == ["gene", "value"] for item in items)


def test_a_free_form_parent_offers_no_space(tmp_path):
    free = child("c001")                                  # written by a model: no genome
    ctx_ = context(baselines() + [free])
    ctx_.parent = free
    with FakeEndpoint({"planner-m": [Answer.json(PLAN)]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        eng.plan(ctx_)
        sent = fake.received[0].text
    assert "search space this task declares" not in sent and "space_change" not in sent


def proposals(accuracies: list[float]) -> list:
    out = []
    for i, accuracy in enumerate(accuracies, start=1):
        c = child(f"c{i:03d}", accuracy=accuracy, title=f"b-softmax: change {i}", motivation=f"idea number {i}")
        out.append(c)
    return out


def test_plateau_is_detected_after_k_proposals_without_a_new_best():
    objective = None
    assert ctx.plateau(baselines() + proposals([0.5] * 3), objective, after=4) is None
    stuck = ctx.plateau(baselines() + proposals([0.5] * 4), objective, after=4)
    assert stuck is not None and stuck.best_id == "b-softmax" and stuck.since == 4
    moved = ctx.plateau(baselines() + proposals([0.5, 0.5, 0.5, 0.9]), objective, after=4)
    assert moved is None                                   # c004 is the new best: the count starts again
    assert ctx.plateau(baselines() + proposals([0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5]), objective, after=4).best_id \
        == "c004"


def test_a_gain_inside_the_noise_floor_is_no_new_best():
    """With the baselines measured over two seeds, a proposal 0.01 above the best is noise: the plateau stands."""
    floored = baselines()
    for c in floored:
        accuracy = c.evaluations["short"].metrics["accuracy"]
        c.seeds["short"] = [result(c.id, accuracy=accuracy + d, heldout_loss=1.0) for d in (-0.04, 0.04)]
    floor = ctx.noise_floor_text(scoring.noise_floors(floored, ctx.run_objective(None, "mqar")))
    assert "accuracy ±" in floor and "at short" in floor
    stuck = ctx.plateau(floored + proposals([0.5, 0.5, 0.5, 0.61]), None, after=4)
    assert stuck is not None and stuck.best_id == "b-softmax" and stuck.floor is not None and stuck.floor > 0.01


def test_the_planner_is_told_when_the_run_has_plateaued(tmp_path):
    tried = proposals([0.5] * 3)
    with FakeEndpoint({"planner-m": [Answer.json(PLAN), Answer.json(PLAN)]}) as fake:
        eng, lab = engine(fake.url, tmp_path, plateau_after=3, novelty_retries=0)
        eng.plan(context(baselines() + tried[:2], round=3))
        eng.plan(context(baselines() + tried, round=4))
        before, after = fake.received[0].text, fake.received[1].text
    assert "plateaued" not in before
    assert "# The run has plateaued" in after and "none of the last 3 proposals improved on the best, b-softmax" in after
    assert "propose a larger step" in after
    assert events(lab, "plateau") == [{"round": 4, "parent_id": "b-softmax", "best_id": "b-softmax", "proposals": 3,
                                       "floor": None}]


def test_the_analysts_prompt_carries_the_learning_curves_and_the_noise_floor(tmp_path):
    candidate, dad = child(), parent()
    candidate.evaluations["short"].curve = [4.0 - 0.1 * i for i in range(20)]         # still falling at the end
    candidate.evaluations["short"].metrics["steps"] = 40.0
    dad.evaluations["short"].curve = [4.0 - 0.2 * i for i in range(10)] + [2.0] * 10   # flat for its last half
    with FakeEndpoint({"analyst-m": [Answer.json(ANALYSIS)]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        eng.analyze(candidate, dad, baselines())
        sent = fake.received[0].text
    assert "# Learning curves" in sent
    assert "c001 at short (training loss, 20 points): 4.000 at step 1" in sent and "2.100 at step 39" in sent
    assert "still falling" in sent
    assert "b-softmax at short (training loss, 20 points)" in sent and "flat at the end" in sent
    assert "# The run's noise floor" in sent and "this run measured no noise floor" in sent


def test_read_edits_takes_fenced_blocks_and_keeps_trailing_whitespace_tolerance():
    text = f"I changed the width.\n```python\n{NARROWER}```\n"
    edits = read_edits(text)
    assert edits == [Edit('CONFIG = {"d_model": 64,', 'CONFIG = {"d_model": 40,')]
    applied = apply_edits("a = 1\nb = 2\n", [Edit("b = 2   ", "b = 3")])
    assert applied.source == "a = 1\nb = 3\n"
    empty = apply_edits("a = 1\n", [Edit("", "x")])
    assert empty.source is None and "empty SEARCH part" in empty.reason()
    assert json.dumps([p.text() for p in empty.problems])


def test_edits_cut_off_by_the_token_limit_apply_none_and_go_back(tmp_path):
    cut = Answer.text(NARROWER + "<<<<<<< SEARCH\nclass Mixer(nn.Module):\n", finish_reason="length")
    with FakeEndpoint({"coder-m": [cut, Answer.text(NARROWER, expect="cut off before its last block ended")]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        assert eng.code(THE_PLAN, parent(), context().spec) == module(40)
    assert events(lab, "edit_failed")[0]["problems"] == [
        "the answer was cut off before its last block ended; send fewer, shorter blocks"]


def test_a_space_change_a_branch_in_flight_already_planned_goes_back(tmp_path):
    from agents.offline.engine import genome_hash
    planned = {**parent().genome, "short_conv": 3}
    ctx_ = context()
    ctx_.tried = {genome_hash(planned)}
    with FakeEndpoint({"planner-m": [Answer.json(SPACE_PLAN), Answer.json(PLAN, expect="a branch still in flight")]}) as f:
        eng, lab = engine(f.url, tmp_path)
        plan = eng.plan(ctx_)
    assert plan.genome is None and plan.change == "short_conv"
