"""Every emitted event type has a payload model, events are emitted and read as those models, and replay's decisions
come from them."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import pytest

from agents.event_types import (EVENT_TYPES, EventSchemaError, JobResult, JobStarted, ParentsSelected, Payload,
                                Promotion, decision_types, event, event_line_adapter, type_of, validate_payload)
from agents.events import Event, EventLog
from archlab.replay import decisions, first_divergence

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = {"tests", "runs", "build", "node_modules"}     # tests emit made-up types on purpose
# `emit` writes to the log; `on_event` callbacks (executors, warm sandboxes) are passed on to it, with fields added
EMITTERS = {"emit": True, "on_event": False}                # name -> whether its call carries the whole payload
MODELS = {model.__name__: model for model in EVENT_TYPES.values()}


def source_files(root: Path = ROOT, under: tuple[str, ...] = ()) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in NOT_SOURCE or any(p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        if under and parts[0] not in under:
            continue
        found.append(path)
    return found


def _names(node: ast.expr) -> list[ast.expr]:
    """The options of `a if c else b`, else the node itself."""
    return [node.body, node.orelse] if isinstance(node, ast.IfExp) else [node]


def emit_calls() -> list[tuple[str, list[str], ast.Call, bool]]:
    """(file:line, event types, the call holding the fields, whole payload?) for every emit in the source tree: by type
    name (`.emit("result", job_id=...)`, the form before typed emits) or by model (`.emit(JobResult(job_id=...))`)."""
    found = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in EMITTERS:
                continue
            first, where = node.args[0], f"{path.relative_to(ROOT)}:{node.lineno}"
            types = [o.value for o in _names(first) if isinstance(o, ast.Constant) and isinstance(o.value, str)]
            if types:
                found.append((where, types, node, EMITTERS[name]))
            elif isinstance(first, ast.Call):       # a model built in place: `emit(JobResult(...))`
                built = [getattr(o, "id", getattr(o, "attr", "")) for o in _names(first.func)]
                types = [t for b in built if b in MODELS for t, m in EVENT_TYPES.items() if m is MODELS[b]]
                if types:
                    found.append((where, types, first, True))
    return found


def untyped_uses(root: Path = ROOT, under: tuple[str, ...] = ("archlab", "agents", "evaluators", "knowledge")
                 ) -> dict[str, list[str]]:
    """file -> what in it emits by type name or keywords, or reads a payload as a dict, with line numbers.

    A payload is read as its model, `event.data`; `agents/events.py`, where `Event.payload` is the line as written,
    is the one place that reads the dict."""
    found: dict[str, list[tuple[int, str]]] = {}
    for path in source_files(root, under):
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            problem = ""
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit":
                first = node.args[0] if node.args else None
                if first is not None and any(isinstance(o, ast.Constant) and isinstance(o.value, str)
                                             for o in _names(first)):
                    problem = "emits by type name"
                elif node.keywords:
                    problem = "emits by keywords"
            elif (isinstance(node, ast.Attribute) and node.attr == "payload" and isinstance(node.ctx, ast.Load)
                  and where != "agents/events.py"):
                problem = "reads .payload"
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr" and len(node.args) > 1
                  and isinstance(node.args[1], ast.Constant) and node.args[1].value == "payload"):
                problem = "reads .payload"
            if problem:
                found.setdefault(where, []).append((node.lineno, problem))
    return {where: [f"{line}: {problem}" for line, problem in sorted(uses)] for where, uses in found.items()}


def test_the_scan_sees_the_emit_sites():
    seen = {t for _, types, _, _ in emit_calls() for t in types}
    assert {"result", "plan", "run_started", "run_resumed", "llm_response", "suite_anchors", "log_upgraded"} <= seen


def test_the_untyped_scan_finds_what_it_names(tmp_path):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "bad.py").write_text(
        "def f(log, e, kind):\n"
        "    log.emit('round_started', round=1)\n"
        "    log.emit(kind, **{'round': 1})\n"
        "    return e.payload['round'], e.payload.get('x'), getattr(e, 'payload', None)\n")
    (tmp_path / "agents" / "good.py").write_text(
        "from agents.event_types import RoundStarted\n"
        "def f(log, e):\n"
        "    log.emit(RoundStarted(round=1))\n"
        "    return e.data.round\n")
    assert untyped_uses(tmp_path) == {"agents/bad.py": ["2: emits by type name", "3: emits by keywords", "4: reads .payload",
                                                "4: reads .payload", "4: reads .payload"]}


def test_no_untyped_emit_or_payload_read_remains():
    found = untyped_uses()
    assert not found, ("emit the payload model (`events.emit(JobResult(...))`) and read `event.data`, not the dict: "
                       + "; ".join(f"{f} ({', '.join(uses)})" for f, uses in sorted(found.items())))


def test_every_model_is_registered_under_one_type():
    twice = {name: model.__name__ for name, model in EVENT_TYPES.items()
             if sum(m is model for m in EVENT_TYPES.values()) > 1}
    assert not twice, f"a typed emit cannot tell these apart: {twice}; give each type its own (sub)class"
    assert all(type_of(model.model_construct()) == name for name, model in EVENT_TYPES.items())


def test_a_typed_emit_refuses_a_wrong_field_naming_the_event_and_the_field(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    fields = dict(job_id="c001-short-0", candidate_id="c001", fidelity="short", sandbox="process", source_hash="ab")
    with pytest.raises(EventSchemaError, match=r"event 'job_started': field 'seed': Input should be a valid integer"):
        log.emit(JobStarted(**fields, seed="seven"))  # type: ignore[arg-type]
    with pytest.raises(EventSchemaError, match=r"event 'job_started': field 'seed' is missing"):
        log.emit(JobStarted(**fields))  # type: ignore[call-arg]
    written = log.emit(JobStarted(**fields, seed=7))
    log.close()
    assert written.type == "job_started" and written.data.seed == 7 and log.seq == 1   # only the good one written


def test_every_emitted_type_has_a_model_and_every_keyword_is_a_field():
    problems = []
    for where, types, call, whole in emit_calls():
        keywords = {k.arg for k in call.keywords if k.arg is not None}
        spread = False                  # `**decision.as_event(...)`: its keys are checked on write, not here
        for k in call.keywords:
            literal = isinstance(k.value, ast.Dict) and all(isinstance(key, ast.Constant) for key in k.value.keys)
            if k.arg is None and literal:
                keywords |= {key.value for key in k.value.keys}          # `**{"from": ...}`
            elif k.arg is None:
                spread = True
        for type in types:
            model = EVENT_TYPES.get(type)
            if model is None:
                problems.append(f"{where}: {type!r} has no payload model; add one in agents/event_types.py")
                continue
            fields = model.model_fields           # passed by name (`from_=`) or, in the keyword form, by alias
            unknown = sorted(keywords - set(fields) - {f.alias for f in fields.values() if f.alias})
            if unknown:
                problems.append(f"{where}: {type!r} passes {unknown}, which {model.__name__} does not have")
            missing = sorted(n for n, f in fields.items() if f.is_required() and not {n, f.alias} & keywords)
            if missing and whole and not spread:
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
    assert [d[0] for d in found] == ["parents_selected", "promotion", "promotion"]
    chosen = dict(zip(ParentsSelected.decides, found[0][1:]))
    assert (chosen["round"], chosen["parent_ids"], chosen["explore"]) == ("1", '["b-softmax"]', "false")
    assert [dict(zip(Promotion.decides, d[1:]))["rung"] for d in found[1:]] == ['"proxy"', '"short"']
    # a field the model does not mark (ranking) is not compared; one it marks (explore) is
    other_ranking = ev(1, "parents_selected", round=1, parent_ids=["b-softmax"], explore=False, ranking=[])
    assert decisions([log[0], other_ranking, *log[2:]]) == found
    explored = ev(1, "parents_selected", round=1, parent_ids=["b-softmax"], explore=True, ranking=[])
    divergence = first_divergence(found, decisions([explored, *log[2:]]))
    assert divergence.startswith("decision 0: the log has parents_selected(round=1, ") and "explore=true" in divergence
    assert "promoted=false" in first_divergence(found, decisions([*log[:3], promotion(3, "short", False)]))


def test_a_new_decision_type_is_compared_once_its_model_says_so(monkeypatch):
    class BatchStarted(Payload):
        decides: ClassVar[tuple[str, ...]] = ("round", "size")
        round: int
        size: int
    monkeypatch.setitem(EVENT_TYPES, "batch_started", BatchStarted)
    assert decisions([ev(0, "batch_started", round=1, size=4)]) == [("batch_started", "1", "4")]


def result(seq, candidate_id, status="ok"):
    return ev(seq, "result", job_id=f"{candidate_id}-short-0", candidate_id=candidate_id, fidelity="short",
              status=status, metrics={}, message="", timings={})


def test_concurrent_branches_may_interleave_but_each_keeps_its_order():
    finished = ev(3, "run_finished", rounds=1, reason="")
    recorded = [result(0, "c001"), result(1, "c002"), promotion(2, "proxy"), finished]
    replayed = [result(0, "c002"), result(1, "c001"), promotion(2, "proxy"), finished]
    assert decisions(recorded) == decisions(replayed)
    assert decisions(recorded)[0][0] == "run_finished"          # the run's own decisions first
    failed = [result(0, "c002", status="error"), *replayed[1:]]
    assert "c002-short-0" in first_divergence(decisions(recorded), decisions(failed))
    reordered = [result(0, "c002"), promotion(1, "proxy"), result(2, "c001"), finished]   # within c001: not the same
    assert first_divergence(decisions(recorded), decisions(reordered))


def test_the_replay_engine_serves_each_branch_its_own_plan_and_code():
    from agents.engine import PlanContext
    from agents.offline.engine import NoProposal
    from agents.records import Candidate
    from agents.replay import ReplayDivergence, ReplayEngine
    from wire.task import TaskSpec

    def plan(seq, cid, parent):
        return ev(seq, "plan", round=1, candidate_id=cid, parent_id=parent, title=f"{parent}: x", motivation="m",
                  change="heads", detail=f"for {cid}")

    log = [ev(0, "parents_selected", round=1, parent_ids=["b-a", "b-b"], explore=False, ranking=[],
              candidate_ids=["c001", "c002"]),
           ev(1, "no_proposal", round=1, candidate_id="c002", parent_id="b-a", reason="nothing new for b-a"),
           plan(2, "c002", "b-b"), plan(3, "c001", "b-a"),
           ev(4, "code", round=1, candidate_id="c002", parent_id="b-b", source_hash="h2", source="two"),
           ev(5, "code", round=1, candidate_id="c001", parent_id="b-a", source_hash="h1", source="one")]
    engine = ReplayEngine(log)
    spec = TaskSpec(name="mqar", family="sequence")
    parent = {cid: Candidate(id=cid, run_id="r", task="mqar", title=cid, source="") for cid in ("b-a", "b-b")}

    def context(slot, parent_id):
        return PlanContext(spec=spec, round=1, parent=parent[parent_id], candidates=[], slot=slot, batch=2)

    first = engine.plan(context(0, "b-a"))
    assert first.detail == "for c001" and engine.code(first, parent["b-a"], spec) == "one"
    with pytest.raises(NoProposal, match="nothing new for b-a"):
        engine.plan(context(1, "b-a"))
    second = engine.plan(context(1, "b-b"))
    assert second.candidate_id == "c002" and engine.code(second, parent["b-b"], spec) == "two"
    with pytest.raises(ReplayDivergence, match="c001.*b-a.*b-b"):
        engine.plan(context(0, "b-b"))
