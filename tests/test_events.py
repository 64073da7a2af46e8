"""The event log: append and repair, payloads validated on write and on read, old logs upgraded by a named step."""
from __future__ import annotations

import json
import logging
import math
import threading

import pytest

from agents.event_types import (Baseline, JobResult, JobReused, RoundStarted, RunResumed, RunStarted, RunStopped,
                                SettingsOverridden)
from agents.events import SCHEMA_VERSION, EventLog, EventSchemaError, read_events, read_log, upgrade_v1_to_v2


def test_events_append_and_a_torn_last_line_is_repaired(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit(RoundStarted(round=1))
    log.emit(RunStopped(reason="two"))
    log.close()
    with path.open("a") as f:
        f.write('{"seq": 2, "time": 1.0, "type": "c", "pay')      # a crash mid-write
    events, _ = read_events(path)
    assert [e.type for e in events] == ["round_started", "run_stopped"]
    log = EventLog(path)
    assert log.repaired_bytes > 0
    log.emit(RoundStarted(round=2))
    log.close()
    events, end = read_events(path)
    assert [e.seq for e in events] == [0, 1, 2] and end == path.stat().st_size
    assert events[2].data.round == 2 and events[1].data.reason == "two"


def test_a_bad_payload_is_refused_before_it_is_written_naming_the_type_and_the_field(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    with pytest.raises(EventSchemaError, match=r"'round_started'.*field 'round' is missing"):
        log.emit(RoundStarted())  # type: ignore[call-arg]
    with pytest.raises(EventSchemaError, match=r"'round_started'.*field 'rnd' is not part of the model"):
        log.emit(RoundStarted(round=1, rnd=1))  # type: ignore[call-arg]
    with pytest.raises(EventSchemaError, match=r"'job_reused'.*field 'fidelity'.*'chek'"):
        log.emit(JobReused(job_id="c001-short-0", candidate_id="c001", fidelity="chek"))  # type: ignore[arg-type]
    with pytest.raises(EventSchemaError, match=r"'job_reused'.*field 'job_id': Input should be a valid string"):
        log.emit(JobReused(job_id=3, candidate_id="c001", fidelity="short"))  # type: ignore[arg-type]
    with pytest.raises(EventSchemaError) as caught:
        log.emit(RoundStarted(round="first"))  # type: ignore[arg-type]
    assert caught.value.event_type == "round_started" and "agents/event_types.py" in str(caught.value)
    assert not isinstance(caught.value, ValueError)   # no handler of bad input (LLM replies, JSON) swallows it
    log.close()
    assert (tmp_path / "events.jsonl").read_text() == "" and log.seq == 0


def test_the_type_is_the_models_registration_and_an_unregistered_model_is_refused(tmp_path):
    from agents.event_types import Payload

    class Unregistered(Payload):
        round: int

    log = EventLog(tmp_path / "events.jsonl")
    spec = {"name": "mqar", "family": "sequence"}
    started = log.emit(RunStarted(run_id="r", task="mqar", rounds=1, engine="offline", sandbox="process", spec=spec))
    resumed = log.emit(RunResumed(run_id="r", task="mqar", rounds=1, engine="offline", sandbox="process", spec=spec))
    changed = log.emit(SettingsOverridden(config="c.toml", changed={"llm.model": {"from": "a", "to": "b"}}))
    with pytest.raises(EventSchemaError, match=r"'Unregistered'.*not registered"):
        log.emit(Unregistered(round=1))
    with pytest.raises(TypeError, match="unexpected keyword argument"):          # the model alone
        log.emit(RoundStarted(round=1), note="x")  # type: ignore[call-arg]
    log.close()
    events, _ = read_events(tmp_path / "events.jsonl")
    assert [e.type for e in events] == ["run_started", "run_resumed", "settings_overridden"] == \
        [started.type, resumed.type, changed.type]
    assert type(events[1].data) is RunResumed and events[1].data.spec.name == "mqar"
    assert events[2].data == changed.data                  # read back as the model it was written as


def test_emit_takes_the_model_and_refuses_a_type_name_or_a_bad_field(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    written = log.emit(RoundStarted(round=4))
    with pytest.raises(TypeError, match=r"takes a payload model"):
        log.emit("round_started")                            # type: ignore[arg-type]
    with pytest.raises(EventSchemaError, match=r"'round_started'.*field 'round'"):
        RoundStarted(round="first")
    log.close()
    assert isinstance(written.data, RoundStarted) and written.data.round == 4 and log.seq == 1


def test_the_written_line_is_the_model_and_event_data_is_typed(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    written = log.emit(JobResult(job_id="c001-static-0", candidate_id="c001", fidelity="check", status="invalid",
                                 metrics={}, message="no build_model", timings={}))
    log.emit(Baseline(candidate_id="b-softmax", status="ok", metrics={"accuracy": 1, "loss": math.nan}))
    log.close()
    assert isinstance(written.data, JobResult) and written.data.gpus == 0 and written.data.result is None
    line = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert line["schema_version"] == SCHEMA_VERSION
    assert line["payload"]["gpus"] == 0 and line["payload"]["result"] is None
    events, _ = read_events(tmp_path / "events.jsonl")
    assert events[0].payload == written.payload
    metrics = events[1].data.metrics
    assert metrics["accuracy"] == 1.0 and math.isnan(metrics["loss"])   # JSON null read back as NaN


V1_LINES = [
    {"seq": 0, "type": "job_started", "payload": {"job_id": "c001-check-0", "candidate_id": "c001",
                                                  "fidelity": "check", "sandbox": "process", "source_hash": "ab"}},
    {"seq": 1, "type": "result", "payload": {"job_id": "c001-static-0", "candidate_id": "c001", "fidelity": "check",
                                             "status": "invalid", "metrics": {}, "message": "m", "timings": {}}},
    {"seq": 2, "type": "promotion", "payload": {"round": 1, "candidate_id": "c001", "rank": 1, "pool": 2, "keep": 1,
                                                "promoted": True, "to": "full"}},
    {"seq": 3, "type": "run_finished", "payload": {"rounds": 1}},
]


def write_v1(path):
    path.write_text("".join(json.dumps({"schema_version": 1, "time": 1.0, **line}) + "\n" for line in V1_LINES))


def test_an_old_log_loads_through_the_named_logged_upgrade_step(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    write_v1(path)
    original = path.read_text()
    with caplog.at_level(logging.INFO, logger="agents.events"):
        read = read_log(path)
    assert [e.schema_version for e in read.events] == [SCHEMA_VERSION] * 4
    started, result, promotion, finished = (e.data for e in read.events)
    assert started.seed is None and result.gpus == 0 and result.result is None
    assert promotion.rung == "short" and finished.reason == ""
    assert read.upgraded[1]["events"] == 4 and read.upgraded[1]["promotion.rung filled with 'short'"] == 1
    assert "upgrade_v1_to_v2" in caplog.text and "4 events" in caplog.text

    log = EventLog(path)                  # opened to append (a resume): the upgrade is recorded in the log itself
    note = log.history[-1]
    log.close()
    assert note.type == "log_upgraded" and note.data.step == "upgrade_v1_to_v2"
    assert (note.data.from_version, note.data.to_version, note.data.events) == (1, 2, 4)
    assert note.data.changes["result.gpus filled with 0"] == 1
    assert path.read_text().startswith(original)          # the old lines themselves are left as they were


def test_the_upgrade_step_only_fills_what_is_missing():
    payload = {"rounds": 3, "reason": "all 3 rounds done"}
    assert upgrade_v1_to_v2("run_finished", payload) == (payload, [])
    upgraded, changes = upgrade_v1_to_v2("promotion", {"to": "short", "promoted": True})
    assert upgraded["rung"] == "proxy" and changes == ["promotion.rung filled with 'proxy'"]


def test_a_line_its_model_refuses_raises_on_read_and_is_not_taken_for_a_torn_end(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.emit(RoundStarted(round=1))
    log.close()
    with path.open("a") as f:
        f.write(json.dumps({"schema_version": 2, "seq": 1, "time": 1.0, "type": "round_started",
                            "payload": {"round": "one"}}) + "\n")
    size = path.stat().st_size
    with pytest.raises(EventSchemaError, match=r"line 2, seq 1.*field 'round'"):
        read_events(path)
    with pytest.raises(EventSchemaError):
        EventLog(path)
    assert path.stat().st_size == size                    # nothing truncated
    path.write_text(json.dumps({"schema_version": 9, "seq": 0, "time": 1.0, "type": "round_started",
                                "payload": {"round": 1}}) + "\n")
    with pytest.raises(EventSchemaError, match="newer than this archlab"):
        read_events(path)


def test_emits_from_several_threads_get_one_sequence(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    threads = [threading.Thread(target=lambda k=k: [log.emit(RoundStarted(round=k)) for _ in range(20)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    events, _ = read_events(tmp_path / "events.jsonl")
    assert [e.seq for e in events] == list(range(80))
