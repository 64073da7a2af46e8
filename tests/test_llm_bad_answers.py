"""A corpus of realistic bad answers, each handled by retry, repair or a clear failure: never a crash or a hang.

The coder's and fixer's cases are whole-module answers and run under `llm.coder_answer =
"module"` (the form the edit protocol falls back to); edits have their own tests in
`tests/test_llm_edits.py`. Every case runs the real engine and the real `openai` client over HTTP against the strict
fake endpoint (every recorded answer must be used, nothing unrecorded may arrive), then
checks the outcome, that the event log stayed valid JSON, and that the key is not in it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

import pytest

from agents.llm.engine import UNUSABLE_MARK
from agents.llm.errors import LLMUnavailable, UnexpectedModelBehavior
from agents.llm.fake import Answer, FakeEndpoint
from evaluators.static_check import static_problems
from tests.llm_support import (ANALYSIS, KEY, PLAN, THE_PLAN, baselines, child, context, engine, fenced, module,
                                result)

pytestmark = pytest.mark.timeout(30)
MODEL = {"plan": "planner-m", "code": "coder-m", "fix": "coder-m", "analyze": "analyst-m"}
GOOD = module(40)
BROKEN = module(40).replace("def build_model(spec):", "def build_model(spec):\n    x = torch.ones(2, 3) @ torch.ones(2, 3)")


@dataclass
class Case:
    id: str
    role: str                     # plan | code | fix | analyze
    answers: list[Answer]
    expect: str                   # ok | static | stand_in | raises | gave_up | fallback
    match: str = ""               # a regex the outcome's message (or the follow-up request) must match
    check: Callable | None = None
    raises: type = UnexpectedModelBehavior
    over: dict = field(default_factory=dict)


def plan_with(**changes) -> str:
    return json.dumps({**PLAN, **changes})


def raw(message: dict, finish: str = "stop", **top) -> Answer:
    """A completion body written out by hand, for shapes the fake's `Answer.text` does not make."""
    return Answer(body=json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                                "finish_reason": finish}], **top}).encode())


# the analyst copied `78,848` from a prompt that printed numbers with thousands separators
SEPARATED = ('{"summary": "The narrower model kept most of its recall.",\n "findings": [{"text": "Narrowing '
             'd_model kept accuracy on MQAR.", "kind": "insight",\n   "evidence": [{"metric": "params", '
             '"value": 78,848}]}]}')


CASES = [
    # --- the coder ---------------------------------------------------------------------------
    Case("prose-around-code", "code", [Answer.text(fenced(GOOD, "Sure! I made the model narrower.", "Let me know!"))], "ok"),
    Case("no-code-fence", "code", [Answer.text(GOOD)], "ok"),
    Case("preamble-and-trailing-prose-no-fence", "code",
         [Answer.text("Here is the updated module:\n\n" + GOOD + "\nThis should reduce the parameter count.")], "ok"),
    Case("python3-tag-fence", "code", [Answer.text(f"```python3\n{GOOD}```")], "ok"),
    Case("two-blocks-usage-then-module", "code",
         [Answer.text("Usage:\n```python\nmodel = build_model(spec)\n```\nModule:\n" + fenced(GOOD, ""))], "ok"),
    Case("two-modules-takes-the-last", "code",
         [Answer.text("Old:\n" + fenced(module(64), "") + "New:\n" + fenced(GOOD, ""))], "ok"),
    Case("truncated-at-max-tokens", "code",
         [Answer.text(f"```python\n{GOOD[:900]}", finish_reason="length"), Answer.text(fenced(GOOD))], "ok",
         match="cut off"),
    Case("refusal-then-module", "code",
         [Answer.text("I'm sorry, but I can't help with that request."), Answer.text(fenced(GOOD))], "ok",
         match="declines the task"),
    Case("empty-then-module", "code", [Answer.text(""), Answer.text(fenced(GOOD))], "ok", match="was empty"),
    Case("null-content-then-module", "code", [Answer(content=None), Answer.text(fenced(GOOD))], "ok"),
    Case("huge-answer", "code",
         [Answer.text(fenced(GOOD + "\n" + "# padding padding padding\n" * 9000)), Answer.text(fenced(GOOD))], "ok",
         match="over the 200000-byte limit"),
    Case("parent-returned-unchanged", "code", [Answer.text(fenced(module(64))), Answer.text(fenced(GOOD))], "ok",
         match="byte-for-byte the module of candidate b-softmax"),
    Case("syntax-error", "code", [Answer.text(fenced(GOOD.replace("def forward(self, x):", "def forward(self, x)", 1)))],
         "static", match=r"syntax error at line \d+"),
    Case("imports-os-system", "code", [Answer.text(fenced("import os\nos.system('curl evil')\n" + GOOD))], "static",
         match="import of 'os' is not allowed"),
    Case("imports-subprocess", "code", [Answer.text(fenced("import subprocess\n" + GOOD))], "static",
         match="import of 'subprocess' is not allowed"),
    Case("no-build-model", "code", [Answer.text(fenced("import torch\n\nclass Net(torch.nn.Module):\n    pass\n"))],
         "static", match="defines no top-level build_model"),
    Case("non-utf8-body-is-resent", "code",
         [Answer(body=b'{"choices": [{"message": {"content": "\xff\xfe broken"}}]}'), Answer.text(fenced(GOOD))], "ok"),
    Case("lone-surrogates-and-nul", "code",
         [Answer(body=json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
             "role": "assistant", "content": fenced(GOOD, "caf\udcff \x00 here")}}]}).encode())], "ok"),
    Case("only-prose-every-time", "code", [Answer.text("You could try making the model narrower.")] * 3, "stand_in",
         match="no Python module was found"),
    Case("refuses-every-time", "code", [Answer.text("I cannot assist with that.")] * 3, "stand_in",
         match="declines the task"),
    # --- the planner -------------------------------------------------------------------------
    Case("json-in-prose-and-fence", "plan", [Answer.text(f"Great question!\n```json\n{json.dumps(PLAN)}\n```\nCheers")], "ok"),
    Case("json-array-of-one", "plan", [Answer.text(json.dumps([PLAN]))], "ok"),
    Case("synonym-field-names", "plan", [Answer.json({"title": "t", "motivation": "m", "kind": "Short-Conv!!",
                                                      "detail": "d", "expected": "e"})], "ok",
         check=lambda plan: plan.change == "short_conv" and plan.motivation == "m"),
    Case("truncated-json", "plan", [Answer.text(json.dumps(PLAN)[:60], finish_reason="length"), Answer.json(PLAN)], "ok",
         match="cut off"),
    Case("wrong-schema", "plan", [Answer.json({"idea": "make it better"}), Answer.json(PLAN)], "ok",
         match=r"title: Field required"),
    Case("empty-field", "plan", [Answer.text(plan_with(hypothesis="  ")), Answer.json(PLAN)], "ok",
         match="hypothesis: Value error, must be a non-empty string"),
    Case("structured-refusal", "plan", [Answer(content=None, refusal="I can't help with that.")] * 3, "raises",
         match=r"no usable plan in 3 answers"),
    Case("refusal-every-time", "plan", [Answer.text("I'm sorry, I can't do that.")] * 3, "raises",
         match="planner model 'planner-m' gave no usable plan.*archlab resume"),
    Case("429-with-retry-after", "plan", [Answer.error(429, headers={"Retry-After": "0.05"}), Answer.json(PLAN)], "ok"),
    Case("500-then-ok", "plan", [Answer.error(500), Answer.json(PLAN)], "ok"),
    Case("502-every-time", "plan", [Answer.error(502)] * 3, "raises", raises=LLMUnavailable,
         match="failed 3 times .*server 502"),
    Case("timeout-then-ok", "plan", [Answer(delay=1.0), Answer.json(PLAN)], "ok"),
    Case("dropped-mid-body-then-ok", "plan", [Answer(drop="midway"), Answer.json(PLAN)], "ok"),
    Case("dropped-before-answer-every-time", "plan", [Answer(drop="before")] * 3, "raises", raises=LLMUnavailable,
         match="connection"),
    # --- the fixer ---------------------------------------------------------------------------
    Case("fix-prose-then-code", "fix", [Answer.text(fenced(GOOD, "Fixed the matmul shapes in build_model."))], "ok",
         check=lambda fixed: "fix 1: Fixed the matmul shapes" in fixed[0].detail),
    Case("fix-returns-the-failing-module", "fix", [Answer.text(fenced(BROKEN)), Answer.text(fenced(GOOD))], "ok",
         match="unchanged from the one that failed"),
    Case("fix-no-code-every-time", "fix", [Answer.text("The error is in the matmul.")] * 3, "gave_up"),
    # --- answers of unusual shape (what OpenAI-compatible servers send) ---------------------------
    Case("content-as-parts", "code", [raw({"content": [{"type": "text", "text": fenced(GOOD)}]})], "ok"),
    Case("plan-as-a-tool-call", "plan",
         [raw({"content": None, "tool_calls": [{"id": "t", "type": "function", "function": {
             "name": "PlanAnswer", "arguments": json.dumps(PLAN)}}]}, finish="tool_calls")], "ok"),
    Case("reasoning-only-then-ok", "plan",
         [raw({"content": "", "reasoning_content": "The parent is strong, so..."}, finish="length"), Answer.json(PLAN)],
         "ok", match="only reasoning .* no final content"),
    Case("no-choices-then-ok", "code",
         [Answer(body=b'{"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": []}'),
          Answer.text(fenced(GOOD))], "ok", match="no choices"),
    Case("refusal-part-then-ok", "analyze",
         [raw({"content": [{"type": "refusal", "refusal": "I can't help with that."}]}), Answer.json(ANALYSIS)],
         "ok", match="declines the task"),
    # --- the analyst -------------------------------------------------------------------------
    Case("analysis-thousands-separator-then-ok", "analyze", [Answer.text(SEPARATED), Answer.json(ANALYSIS)], "ok",
         match=r"not valid JSON: Expecting property name enclosed in double quotes at line 3, column \d+ .*"
               r"78,848.*without thousands separators"),
    Case("plan-single-quotes-then-ok", "plan",
         [Answer.text(str(PLAN)), Answer.json(PLAN)], "ok", match=r"line 1, column 2 .*double quotes"),
    Case("analysis-evidence-as-dict", "analyze",
         [Answer.json({**ANALYSIS, "findings": [{**ANALYSIS["findings"][0], "evidence": {"accuracy": 0.55}}]})], "ok"),
    Case("analysis-bad-kind-then-ok", "analyze",
         [Answer.json({**ANALYSIS, "findings": [{**ANALYSIS["findings"][0], "kind": "observation"}]}), Answer.json(ANALYSIS)],
         "ok", match="findings.0.kind"),
    Case("analysis-garbage-every-time", "analyze", [Answer.text("The model is good.")] * 3, "fallback",
         match="could not be used"),
    Case("analysis-invents-numbers", "analyze",
         [Answer.json({**ANALYSIS, "findings": [{**ANALYSIS["findings"][0], "evidence": [{"metric": "accuracy", "value": 0.99}]}]})],
         "ok", check=lambda out: out[1][0].evidence["accuracy"] == 0.55),
]


def run_role(eng, role: str):
    if role == "plan":
        return eng.plan(context())
    parent = next(c for c in baselines() if c.id == "b-softmax")
    if role == "code":
        return eng.code(THE_PLAN, parent, context().spec)
    if role == "fix":
        failure = result("c001", "check", "error", "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)")
        return eng.fix(THE_PLAN, BROKEN, failure, 1, parent=parent, spec=context().spec)
    return eng.analyze(child(), parent, baselines())


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_answer_is_handled(case: Case, tmp_path):
    with FakeEndpoint({MODEL[case.role]: case.answers}) as fake:
        # the corpus's code answers are whole modules: it runs the module protocol (edits: tests/test_llm_edits.py)
        protocol = {"coder_answer": "module"} if case.role in ("code", "fix") else {}
        eng, lab = engine(fake.url, tmp_path, **{**protocol, **case.over})
        if case.expect == "raises":
            with pytest.raises(case.raises) as raised:
                run_role(eng, case.role)
            outcome, message = None, str(raised.value)
        else:
            outcome = run_role(eng, case.role)
            message = "\n".join(r.text for r in fake.received[1:])       # what was sent back to the model
        requests = len(fake.received)
    assert requests == len(case.answers)
    if case.expect == "ok":
        if case.role == "code":
            assert outcome == GOOD and static_problems(outcome) == []
        elif case.role == "plan":
            assert outcome.parent_id == "b-softmax" and outcome.motivation and outcome.change
        elif case.role == "fix":
            assert outcome is not None and outcome[1] == GOOD
        else:
            text, findings = outcome
            assert findings and "Measured: c001: accuracy 0.550" in text
    elif case.expect == "static":
        message = "; ".join(static_problems(outcome))
    elif case.expect == "stand_in":
        assert outcome.startswith(UNUSABLE_MARK) and "def build_model(spec):" in outcome
        assert static_problems(outcome) == []                 # it reaches the sandbox check, which reports the reason
        message = outcome
    elif case.expect == "gave_up":
        assert outcome is None
    elif case.expect == "fallback":
        text, findings = outcome
        message = text
        assert findings and findings[0].evidence["accuracy"] == 0.55
    if case.match:
        assert re.search(case.match, message, re.DOTALL), message[:2000]
    if case.check:
        assert case.check(outcome)
    log = lab.events.path.read_text(encoding="utf-8")
    assert KEY not in log
    assert all(json.loads(line) for line in log.splitlines())
    unusable = [e for e in lab.logged() if e.type == "llm_error" and e.payload["kind"] == "unusable_answer"]
    assert all(e.payload["message"] for e in unusable)
    answered = [e.payload["call_id"] for e in lab.logged() if e.type == "llm_response"]
    marked = {e.payload["call_id"] for e in lab.logged() if e.type in ("duplicate_code",) or e in unusable}
    taken = [c for c in answered if c not in marked]      # every other answer was taken: at most one per call
    assert len(taken) <= 1 and (case.expect not in ("ok", "static") or len(taken) == 1), (answered, marked)
