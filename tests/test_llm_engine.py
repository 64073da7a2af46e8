"""The `openai` engine's behaviour beyond bad answers: novelty, duplicates, prompts, literature, usage, construction."""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from string import Template

import pytest

from agents.engine import EngineUnavailable
from archlab.backends import make_engine
from agents.events import Event
from agents.llm.engine import UNUSABLE_MARK, unusable_module
from agents.llm.errors import LLMConfigError
from agents.llm.fake import Answer, FakeEndpoint
from agents.llm.prompts import template
from agents.llm.usage import usage_by_role
from archlab.settings import load_settings
from knowledge.embedders import HashingEmbedder
from knowledge.literature import Literature, load_entries
from knowledge.novelty import Earlier, NoveltyCheck
from knowledge.records import Finding
from tests.llm_support import (ANALYSIS, PLAN, THE_PLAN, baselines, child, context, engine, fenced, module)

pytestmark = pytest.mark.timeout(60)
PAPERS = Path(__file__).resolve().parents[1] / ".." / "shared" / "papers"    # beside the repository
OTHER_PLAN = {**PLAN, "title": "gate the attention output", "hypothesis": "A sigmoid output gate lets each "
              "position suppress irrelevant retrieved values, sharpening recall.", "change_kind": "output_gate"}


def earlier_child() -> list:
    """The baselines and a c001 whose proposal is the planner's PLAN, word for word."""
    c001 = child(title=f"b-softmax: {PLAN['title']}", motivation=PLAN["hypothesis"])
    return baselines() + [c001]


def test_near_duplicate_plan_goes_back_with_the_duplicate_shown(tmp_path):
    with FakeEndpoint({"planner-m": [Answer.json(PLAN), Answer.json(OTHER_PLAN, expect="[c001]")]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        plan = eng.plan(context(earlier_child(), round=2))
        second = fake.received[1].text
    assert plan.change == "output_gate" and plan.title == "b-softmax: gate the attention output"
    assert "too close to one the lab already made" in second and PLAN["hypothesis"] in second
    rejected = [e.payload for e in lab.logged() if e.type == "novelty_rejected"]
    assert len(rejected) == 1 and rejected[0]["nearest_id"] == "c001" and rejected[0]["similarity"] >= 0.92
    assert rejected[0]["kept"] is False


def test_near_duplicates_are_kept_after_the_bounded_retries(tmp_path):
    with FakeEndpoint({"planner-m": [Answer.json(PLAN)] * 2}) as fake:
        eng, lab = engine(fake.url, tmp_path, novelty_retries=1)
        plan = eng.plan(context(earlier_child(), round=2))
    assert "kept after 1 retries" in plan.detail
    assert [e.payload["kept"] for e in lab.logged() if e.type == "novelty_rejected"] == [False, True]


def test_planner_prompt_carries_parent_findings_principles_failures_and_tried(tmp_path):
    finding = Finding(id="r1-c001-0", text="Narrowing d_model cost accuracy on MQAR.", kind="insight", task="mqar")
    failed = child("c002", accuracy=None, status="failed", title="b-softmax: swap in a state-space mixer",
                   motivation="a selective recurrence", message="RuntimeError: shapes do not match")
    ctx = context(baselines() + [child(), failed], round=3)
    ctx.findings = [(finding, 0.2)]
    with FakeEndpoint({"planner-m": [Answer.json(OTHER_PLAN)]}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        plan = eng.plan(ctx)
        system, user = (m["content"] for m in fake.received[0].body["messages"])
    assert plan.retrieved == ["r1-c001-0"]
    assert "Answer with ONE JSON object" in system
    assert "Multi-query associative recall" in user and "def build_model(spec)" in user
    assert "def build_model(spec):" in user and "accuracy 0.600" in user               # the parent: code and numbers
    assert "[r1-c001-0] (insight, distance 0.20)" in user
    assert "- c002 from b-softmax [width_depth] b-softmax: swap in a state-space mixer: check: error" in user
    assert "- c001 from b-softmax" in user
    principles = next(e.payload for e in lab.logged() if e.type == "principles_retrieved")
    assert len(principles["ids"]) == 4 and all(f"[{pid}]" in user for pid in principles["ids"])


def test_coder_gets_plan_and_parent_and_a_duplicate_of_any_evaluated_module_goes_back(tmp_path):
    duplicate_of_c001 = child().source
    answers = [Answer.text(fenced(duplicate_of_c001), expect="d_model 64 -> 40"),
               Answer.text(fenced(module(40)), expect="byte-for-byte the module of candidate c001")]
    with FakeEndpoint({"planner-m": [Answer.json(OTHER_PLAN)], "coder-m": answers}) as fake:
        eng, lab = engine(fake.url, tmp_path)
        eng.plan(context(baselines() + [child()], round=2))
        source = eng.code(THE_PLAN, baselines()[2], context().spec, candidates=baselines() + [child()])
        first = fake.requests_for("coder-m")[0].text
    assert source == module(40)
    assert '"d_model": 64' in first and "Hypothesis: fewer parameters" in first
    assert [e.payload["duplicate_of"] for e in lab.logged() if e.type == "duplicate_code"] == ["c001"]


def test_fixer_gets_the_error_and_the_log_tail(tmp_path):
    from tests.llm_support import result
    failure = result("c001", "check", "error", "RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    failure.log_tail = "Traceback (most recent call last):\n  File \"candidate.py\", line 40, in forward\nRuntimeError"
    with FakeEndpoint({"coder-m": [Answer.text(fenced(module(40), "Fixed the projection width."),
                                               expect="line 40, in forward")]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        plan, source = eng.fix(THE_PLAN, module(44), failure, 2, parent=baselines()[2], spec=context().spec)
        sent = fake.received[0].text
    assert source == module(40) and plan.detail.endswith("fix 2: Fixed the projection width.")
    assert "mat1 and mat2 shapes" in sent and '"d_model": 44' in sent and "attempt 2" in sent
    assert '-CONFIG = {"d_model": 64' in sent and '+CONFIG = {"d_model": 44' in sent     # what it changed in b-softmax


def test_a_stand_in_module_fails_its_sandbox_check_with_the_reason(run_source):
    stand_in = unusable_module("the coder model 'x' gave no usable module: the answer was empty")
    checked = run_source(stand_in)
    assert checked.status == "error" and "gave no usable module: the answer was empty" in checked.message


def test_fix_of_a_stand_in_asks_for_the_whole_module_again(tmp_path):
    with FakeEndpoint({"coder-m": [Answer.text(fenced(module(40)), expect="# The parent module (b-softmax)")]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        from tests.llm_support import result
        fixed = eng.fix(THE_PLAN, unusable_module("empty"), result("c001", "check", "error", "RuntimeError"), 1,
                        parent=baselines()[2], spec=context().spec)
    assert fixed is not None and fixed[1] == module(40) and not fixed[1].startswith(UNUSABLE_MARK)


def test_analyst_findings_rest_on_measured_numbers(tmp_path):
    failed = child("c002", accuracy=None, status="failed")
    answer = {**ANALYSIS, "findings": [{**ANALYSIS["findings"][0], "kind": "insight"}]}
    with FakeEndpoint({"analyst-m": [Answer.json(ANALYSIS), Answer.json(answer, expect="RuntimeError: shapes")]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        text, findings = eng.analyze(child(), baselines()[2], baselines())
        _, failure_findings = eng.analyze(failed, baselines()[2], baselines())
    assert "against its parent b-softmax" in text.lower() and "-0.050" in text
    assert findings[0].id == "r1-c001-0" and findings[0].evidence["delta_accuracy"] == pytest.approx(-0.05)
    assert failure_findings[0].kind == "failure"                  # a failed candidate's lesson is a failure


def test_every_prompt_loads_and_fills():
    for name in ("planner", "coder", "fixer", "analyst", "repair", "novelty", "duplicate_code", "coder_edits",
                 "fixer_edits", "edit_failed"):
        system, user = template(name)
        for text in (system, user):
            assert Template(text).is_valid(), name
            Template(text).substitute({n: "x" for n in Template(text).get_identifiers()})
        assert user, name


def test_literature_has_forty_principles_in_our_own_words():
    entries = load_entries()
    assert len(entries) >= 40 and len({e.id for e in entries}) == len(entries)
    assert all(e.idea and e.principle and e.applies_to and e.title for e in entries)
    if not PAPERS.is_dir():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set but the reading list is not at {PAPERS.resolve()} (<repo>/../shared/papers)")
        pytest.skip(f"the reading list is not at {PAPERS.resolve()} (<repo>/../shared/papers)")
    source = " ".join(" ".join(p.read_text(errors="replace").split()).lower() for p in PAPERS.glob("*.txt"))
    for entry in entries:
        words = re.findall(r"[a-z0-9'-]+", f"{entry.idea} {entry.principle}".lower())
        copied = [" ".join(words[i:i + 10]) for i in range(len(words) - 9) if " ".join(words[i:i + 10]) in source]
        assert not copied, f"{entry.id} copies the abstract: {copied[0]!r}"


def test_literature_loads_once_and_retrieves_by_meaning(tmp_path):
    from knowledge.store import KnowledgeStore
    store = KnowledgeStore(tmp_path, HashingEmbedder())
    literature = Literature(store)
    found = literature.nearest("a selective recurrent state space mixer with input-dependent gates for recall", k=3)
    assert found[0][0].id == "mamba-selective-ssm" and [d for _, d in found] == sorted(d for _, d in found)
    assert store.principles().count() == len(load_entries())
    again = Literature(KnowledgeStore(tmp_path, HashingEmbedder()))
    assert again.ensure_loaded() == len(load_entries())


def test_novelty_check():
    check = NoveltyCheck(HashingEmbedder(), threshold=0.92)
    earlier = [Earlier("c001", "add a short causal convolution before attention"),
               Earlier("c002", "replace layer norm by RMS norm")]
    same = check.judge("add a short causal convolution before attention", earlier)
    assert not same and same.nearest.id == "c001" and same.similarity == pytest.approx(1.0) and "c001" in same.reason
    other = check.judge("a mixture of experts feed-forward layer with top-2 routing", earlier)
    assert other and other.similarity < 0.92
    assert check.judge("anything", [])
    assert not NoveltyCheck.judge_source("abc", {"abc": "c003"}) and NoveltyCheck.judge_source("abd", {"abc": "c003"})
    with pytest.raises(ValueError):
        NoveltyCheck(HashingEmbedder(), threshold=1.5)


def test_usage_by_role_sums_responses():
    from agents.event_types import LLMError, LLMResponse

    def response(role, i, o, cost, priced=True):
        return Event.of(LLMResponse(role=role, model="m", served_by="m", call_id="x", attempt=1, text="",
                                    finish_reason="stop", refused=False, input_tokens=i, output_tokens=o,
                                    usage_estimated=False, cost_usd=cost, priced=priced, seconds=0.0))
    failed = LLMError(role="coder", model="m", call_id="y", attempt=1, kind="server", status=500, message="",
                      will_retry=False, retry_in=None)
    events = [response("coder", 10, 5, 0.5), response("planner", 1, 2, 0.25), response("coder", 10, 5, 0.5, False),
              Event.of(failed, seq=1)]
    usage = usage_by_role(events)
    assert list(usage) == ["planner", "coder"]
    assert usage["coder"] == {"calls": 2, "input_tokens": 20, "output_tokens": 10, "cost_usd": 1.0, "unpriced_calls": 1,
                              "largest_input_tokens": 10}


def test_make_engine_needs_a_key_only_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMConfigError, match="export OPENAI_API_KEY"):
        make_engine("openai", 0, load_settings(None, llm__backend="openai"))
    local = make_engine("openai", 0, load_settings(None, llm__backend="openai", llm__base_url="http://127.0.0.1:9/v1"))
    assert local.name == "openai" and local.client.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(EngineUnavailable):
        make_engine("openai", 0, None)
    assert json.dumps(usage_by_role([])) == "{}"


FAILURE_MESSAGE = "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x44 and 64x64)"


def check_failure():
    from tests.llm_support import result
    return result("c001", "check", "error", FAILURE_MESSAGE)


@pytest.mark.parametrize("how", ["arguments", "attached-run"])
def test_a_fresh_engine_after_a_resume_fixes_with_the_contract_and_the_parent(tmp_path, how):
    """Nothing of `code` survives in the engine: a new one (as after `archlab resume`) sees contract and parent.

    `arguments`: the check node passes parent and spec. `attached-run`: an older call without
    them, and the engine reads the parent's record and the spec from the run it is attached to.
    """
    parent = baselines()[2]
    with FakeEndpoint({"coder-m": [Answer.text(fenced(module(40)))]}) as fake:
        if how == "arguments":
            fresh, _ = engine(fake.url, tmp_path)
            fixed = fresh.fix(THE_PLAN, module(44), check_failure(), 1, parent=parent, spec=context().spec)
        else:
            fresh, _ = engine(fake.url, tmp_path, records=baselines())
            fixed = fresh.fix(THE_PLAN, module(44), check_failure(), 1)
        system, user = (m["content"] for m in fake.received[0].body["messages"])
    assert fixed is not None and fixed[1] == module(40)
    assert "build_model(spec)" in system and "spec.max_params = 2000000" in system and "causal" in system
    assert "its parent b-softmax" in user and '-CONFIG = {"d_model": 64' in user and FAILURE_MESSAGE in user


def test_a_fresh_engine_rewrites_a_stand_in_from_the_attached_run(tmp_path):
    with FakeEndpoint({"coder-m": [Answer.text(fenced(module(40)), expect="# The parent module (b-softmax)")]}) as fake:
        fresh, _ = engine(fake.url, tmp_path, records=baselines())
        fixed = fresh.fix(THE_PLAN, unusable_module("empty"), check_failure(), 1)
    assert fixed is not None and fixed[1] == module(40)


def test_the_engine_keeps_nothing_of_a_call(tmp_path):
    """No per-call state on `self`: after plan, code, fix and analyze its attributes are the ones it started with."""
    answers = {"planner-m": [Answer.json(OTHER_PLAN)], "coder-m": [Answer.text(fenced(module(40)))] * 2,
               "analyst-m": [Answer.json(ANALYSIS)]}
    with FakeEndpoint(answers) as fake:
        eng, _ = engine(fake.url, tmp_path)
        before = {k: id(v) for k, v in vars(eng).items()}
        eng.plan(context(baselines() + [child()], round=2))
        eng.code(THE_PLAN, baselines()[2], context().spec)
        eng.fix(THE_PLAN, module(44), check_failure(), 1, parent=baselines()[2], spec=context().spec)
        eng.analyze(child(), baselines()[2], baselines())
        after = {k: id(v) for k, v in vars(eng).items()}
    assert after == before


def test_candidates_of_a_round_can_be_drafted_from_several_threads(tmp_path):
    widths = (36, 40, 44, 52)
    answers = [Answer.text(fenced(module(w)), delay=0.05) for w in widths]
    plans = [THE_PLAN.model_copy(update={"detail": f"d_model 64 -> {w}"}) for w in widths]
    outcomes: dict[int, str] = {}
    with FakeEndpoint({"coder-m": answers}) as fake:
        eng, lab = engine(fake.url, tmp_path, timeout_seconds=5)
        threads = [threading.Thread(target=lambda i=i: outcomes.__setitem__(i, eng.code(plans[i], baselines()[2],
                                                                                         context().spec)))
                   for i in range(len(widths))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes.values()) == sorted(module(w) for w in widths)
    call_ids = [e.payload["call_id"] for e in lab.logged() if e.type == "llm_response"]
    assert len(set(call_ids)) == len(widths)


def test_prompts_print_numbers_as_json_numbers(tmp_path):
    """No thousands separators, no leading +, no %: a model that copies a number into its JSON stays valid."""
    big = child(accuracy=0.55)
    big.evaluations["short"].metrics.update(params=78848, flops=1.5e9, odd=float("nan"))
    parent = baselines()[2]
    parent.evaluations["short"].metrics["params"] = 100352
    with FakeEndpoint({"planner-m": [Answer.json(OTHER_PLAN)], "analyst-m": [Answer.json(ANALYSIS)]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        eng.plan(context(baselines() + [big], round=2))
        eng.analyze(big, parent, baselines())
        sent = "\n".join(r.text for r in fake.received)
    assert "78848" in sent and "100352" in sent and "2000000" in sent
    assert not re.search(r"\d,\d{3}", sent), re.search(r".{30}\d,\d{3}.{10}", sent)
    numbers = re.findall(r"(?<![\w.])[-+]?\d[\d.eE+-]*%?", sent.split("# The measured comparison")[-1])
    assert numbers and all(not n.startswith("+") and not n.endswith("%") for n in numbers), numbers
    assert "nan" not in sent.lower().replace("nanogpt", "")
