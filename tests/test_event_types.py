"""Every emitted event type has a payload model, and replay's decisions come from those models."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import pytest

from agents.event_types import (EVENT_TYPES, EventSchemaError, JobResult, ParentsSelected, Payload, decision_types,
                                event, event_line_adapter, validate_payload)
from agents.events import Event
from archlab.replay import decisions, first_divergence

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = {"tests", "runs", "build", "node_modules"}     # tests emit made-up types on purpose


def emit_calls() -> list[tuple[str, int, list[str], ast.Call]]:
    """(file:line, event types, call) for every `.emit("<type>", ...)` in the source tree."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in NOT_SOURCE or any(p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name != "emit":
                continue
            first = node.args[0]
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            types = [o.value for o in options if isinstance(o, ast.Constant) and isinstance(o.value, str)]
            if types:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", types, node))
    return found


def test_the_scan_sees_the_emit_sites():
    seen = {t for _, types, _ in emit_calls() for t in types}
    assert {"result", "plan", "run_started", "run_resumed", "llm_response"} <= seen


def test_every_emitted_type_has_a_model_and_every_keyword_is_a_field():
    problems = []
    for where, types, call in emit_calls():
        keywords = {k.arg for k in call.keywords if k.arg is not None}
        spread = False                  # `**decision.as_event(...)`: its keys are checked on write, not here
        for k in call.keywords:
            if k.arg is None and isinstance(k.value, ast.Dict) and all(isinstance(key, ast.Constant) for key in k.value.keys):
                keywords |= {key.value for key in k.value.keys}          # `**{"from": ...}`
            elif k.arg is None:
                spread = True
        for type in types:
            model = EVENT_TYPES.get(type)
            if model is None:
                problems.append(f"{where}: {type!r} has no payload model; add one in agents/event_types.py")
                continue
            fields = {f.alias or n: f for n, f in model.model_fields.items()}
            unknown = sorted(keywords - set(fields))
            if unknown:
                problems.append(f"{where}: {type!r} passes {unknown}, which {model.__name__} does not have")
            missing = sorted(n for n, f in fields.items() if f.is_required() and n not in keywords)
            if missing and not spread:
                problems.append(f"{where}: {type!r} does not pass {missing}, which {model.__name__} requires")
    assert not problems, "\n".join(problems)


def test_both_shapes_of_result_are_one_model():
    common = dict(job_id="c001-check-0", candidate_id="c001", fidelity="check", status="ok", metrics={"params": 10.0},
                  message="", timings={"wall_seconds": 1.5})
    record = {**common, "gpus": 0, "result": {"job_id": "c001-check-0", "candidate_id": "c001", "fidelity": "check",
                                              "status": "ok", "metrics": {"params": 10.0}}}
    sandboxed = validate_payload("result", record)
    static = validate_payload("result", {**common, "job_id": "c001-static-0", "status": "invalid"})
    assert type(sandboxed) is type(static) is JobResult
    assert sandboxed.result.metrics == {"params": 10.0} and static.result is None and static.gpus == 0
    with pytest.raises(EventSchemaError, match="result.status"):
        validate_payload("result", {**record, "result": {**record["result"], "status": "fine"}})


def test_the_discriminated_union_reads_any_line():
    adapter = event_line_adapter()
    line = adapter.validate_python({"type": "round_started", "payload": {"round": 3}})
    assert line.payload.round == 3
    assert set(adapter.json_schema()["discriminator"]["mapping"]) == set(EVENT_TYPES)


def test_decides_must_name_fields():
    with pytest.raises(TypeError, match="not fields"):
        class Broken(Payload):
            decides: ClassVar[tuple[str, ...]] = ("nope",)
            round: int
        event("broken_for_test")(Broken)
    assert "broken_for_test" not in EVENT_TYPES


def ev(seq: int, type: str, **payload) -> Event:
    data = validate_payload(type, payload)
    return Event(seq=seq, time=0.0, type=type, payload=data.model_dump())


def promotion(seq, rung, promoted=True):
    return ev(seq, "promotion", round=1, candidate_id="c001", rung=rung, to="short" if rung == "proxy" else "full",
              promoted=promoted, reason="test")


def test_replay_compares_the_fields_the_models_mark():
    assert decision_types()["parents_selected"] == ParentsSelected.decides and "ranking" not in ParentsSelected.decides
    log = [ev(0, "round_started", round=1),
           ev(1, "parents_selected", round=1, parent_ids=["b-softmax"], explore=False, ranking=["b-softmax", "b-x"]),
           promotion(2, "proxy"), promotion(3, "short"), promotion(4, "short")]   # the last: a re-run node
    found = decisions(log)
    assert found == [("parents_selected", "1", '["b-softmax"]', "false"),
                     ("promotion", '"c001"', '"proxy"', "true"), ("promotion", '"c001"', '"short"', "true")]
    # a field the model does not mark (ranking) is not compared; one it marks (explore) is
    other_ranking = ev(1, "parents_selected", round=1, parent_ids=["b-softmax"], explore=False, ranking=[])
    assert decisions([log[0], other_ranking, *log[2:]]) == found
    explored = ev(1, "parents_selected", round=1, parent_ids=["b-softmax"], explore=True, ranking=[])
    assert "parents_selected(round=1, parent_ids=[\"b-softmax\"], explore=false)" in \
        first_divergence(found, decisions([explored, *log[2:]]))
    assert "promoted=false" in first_divergence(found, decisions([*log[:3], promotion(3, "short", False)]))


def test_a_new_decision_type_is_compared_once_its_model_says_so(monkeypatch):
    class BatchStarted(Payload):
        decides: ClassVar[tuple[str, ...]] = ("round", "size")
        round: int
        size: int
    monkeypatch.setitem(EVENT_TYPES, "batch_started", BatchStarted)
    assert decisions([ev(0, "batch_started", round=1, size=4)]) == [("batch_started", "1", "4")]
