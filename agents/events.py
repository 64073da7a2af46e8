"""The `Event` record and the append-only `events.jsonl` log of a run.

Every line is one JSON event, written and flushed before the writer moves on, so a crash
loses at most the line being written; a torn last line is detected (and can be repaired)
when the log is opened again.

Payloads are typed (`agents.event_types`): an event is emitted as its payload model,
`events.emit(JobStarted(...))`, which validated its fields when it was built, and `read_events`
validates every line, so `event.data` is always the payload as its model; readers use it
(`event.data.job_id`), never the dict `event.payload`, which is the line as written.
`Event.of(model)` is the event without a log (tests, tools). Lines carry `schema_version`;
an older line is read through the named upgrade steps in `UPGRADES` (today
`upgrade_v1_to_v2`), each logged (Python logging, and a `log_upgraded` event when a log is
opened for appending), never through silent defaults.
A line from a newer archlab, or one its model refuses, raises `EventSchemaError`; only an
unparseable line is taken for the torn end of the log.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from agents.event_types import EventSchemaError, LogUpgraded, Payload, type_of, validate_payload

__all__ = ["Event", "EventLog", "EventSchemaError", "LogRead", "SCHEMA_VERSION", "UPGRADES", "read_events",
           "read_log", "to_jsonable", "upgrade_v1_to_v2"]

SCHEMA_VERSION = 2      # 1: untyped payloads; 2: every payload validated against its model
log = logging.getLogger(__name__)


class Event(BaseModel):
    schema_version: int = SCHEMA_VERSION
    seq: int
    time: float
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)   # the line as written; readers use `data`
    _data: Payload | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, data: Payload, seq: int = 0, time: float = 0.0) -> Event:
        """The event holding `data`, as `EventLog.emit` writes it (a test or a tool can build a log without one)."""
        event = cls(seq=seq, time=time, type=type_of(data), payload=data.model_dump(by_alias=True))
        event._data = data
        return event

    @property
    def data(self) -> Payload:
        """The payload as its type's model (`agents.event_types`); `EventSchemaError` if it does not fit."""
        if self._data is None:
            self._data = validate_payload(self.type, self.payload, where=f"seq {self.seq}")
        return self._data


# --- upgrades: one named step per schema version, each saying what it changed ----------------
def upgrade_v1_to_v2(type: str, payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A v1 payload (written before payloads were typed) as v2, and what was changed.

    v1 logs hold shapes that later code stopped writing; each gets the value it meant:
    - `result` of a static check (or of the first runs) had no `gpus` and no `result` record:
      0 GPUs and no record (replay never answers a job with it);
    - `job_started` from before seeds were recorded had no `seed`: None (unknown);
    - `run_finished` from before finishing reasons had no `reason`: "";
    - `promotion` from before the proxy rung had no `rung`: the rung below `to`;
    - a v1 round had one candidate, `c<round>` (`c001`): `parents_selected.candidate_ids` and the
      `candidate_id` of `retrieval`, `no_proposal` and `plan` name it.
    """
    out, changes = dict(payload), []

    def fill(name: str, value: Any, shown: str = "") -> None:
        if name not in out:
            out[name] = value
            changes.append(f"{type}.{name} filled with {shown or repr(value)}")

    if type == "result":
        fill("gpus", 0)
        fill("result", None)
    elif type == "job_started":
        fill("seed", None)
    elif type == "run_finished":
        fill("reason", "")
    elif type == "promotion":
        fill("rung", {"full": "short", "short": "proxy"}.get(out.get("to"), "short"))
    elif type == "parents_selected" and isinstance(out.get("round"), int):
        fill("candidate_ids", [f"c{out['round']:03d}"], "[c<round>]")
    elif type in ("retrieval", "no_proposal", "plan") and isinstance(out.get("round"), int):
        fill("candidate_id", f"c{out['round']:03d}", "c<round>")
    return out, changes


# schema version -> the step that takes a payload from it to the next version
UPGRADES: dict[int, Callable[[str, dict[str, Any]], tuple[dict[str, Any], list[str]]]] = {1: upgrade_v1_to_v2}


@dataclass
class LogRead:
    events: list[Event]
    valid_end: int                      # byte offset where the valid part of the file ends
    upgraded: dict[int, Counter] = field(default_factory=dict)   # from-version -> {change: count, "events": n}


def read_log(path: Path) -> LogRead:
    """Every complete event, validated and upgraded to `SCHEMA_VERSION`, and what the upgrades did."""
    read = LogRead([], 0)
    if not path.exists():
        return read
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                break
            try:
                event = Event.model_validate(json.loads(line))
            except (ValueError, ValidationError):     # not an event line: the torn end of the log
                break
            where = f"{path.name} line {number}, seq {event.seq}"
            payload = _upgrade(event, read.upgraded, where)
            data = validate_payload(event.type, payload, where)
            event = event.model_copy(update={"schema_version": SCHEMA_VERSION,
                                             "payload": data.model_dump(by_alias=True)})
            event._data = data
            read.events.append(event)
            read.valid_end += len(line)
    for version, counts in sorted(read.upgraded.items()):
        log.info("%s: %d events read through %s: %s", path, counts["events"], UPGRADES[version].__name__,
                 ", ".join(f"{change} ({n})" for change, n in counts.items() if change != "events") or "no changes")
    return read


def _upgrade(event: Event, upgraded: dict[int, Counter], where: str) -> dict[str, Any]:
    if event.schema_version > SCHEMA_VERSION:
        raise EventSchemaError(event.type, [f"schema_version {event.schema_version} is newer than this archlab's "
                                            f"{SCHEMA_VERSION}; read the log with the archlab that wrote it"], where)
    payload = event.payload
    for version in range(event.schema_version, SCHEMA_VERSION):
        if version not in UPGRADES:
            raise EventSchemaError(event.type, [f"no upgrade step from schema_version {version}"], where)
        payload, changes = UPGRADES[version](event.type, payload)
        counts = upgraded.setdefault(version, Counter())
        counts.update(["events", *changes])
    return payload


def read_events(path: Path) -> tuple[list[Event], int]:
    """All complete events, and the byte offset where the valid part of the file ends."""
    read = read_log(path)
    return read.events, read.valid_end


class EventLog:
    """Appends events to `events.jsonl`; repairs a torn last line on open. Safe to emit from several threads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        read = read_log(self.path)
        self.repaired_bytes = 0
        if self.path.exists() and self.path.stat().st_size > read.valid_end:
            self.repaired_bytes = self.path.stat().st_size - read.valid_end
            with self.path.open("r+b") as handle:
                handle.truncate(read.valid_end)
        self.history: list[Event] = read.events     # every event of the run, earlier sessions included
        self.seq = read.events[-1].seq + 1 if read.events else 0
        self._lock = threading.RLock()              # a listener may emit
        self._handle = self.path.open("a", encoding="utf-8")
        self.listeners: list = []
        for version, counts in sorted(read.upgraded.items()):
            self.emit(LogUpgraded(step=UPGRADES[version].__name__, from_version=version, to_version=version + 1,
                                  events=counts["events"],
                                  changes={change: n for change, n in counts.items() if change != "events"}))

    def emit(self, data: Payload) -> Event:
        """Append `data`, a payload model (`agents.event_types`), as the event type it is registered under.

        The model validated its fields when it was built (`EventSchemaError` naming the event and the
        field); what is written is its dump by alias."""
        if not isinstance(data, Payload):
            raise TypeError(f"emit() takes a payload model of agents.event_types (emit(RoundStarted(round=1))), "
                            f"not {type(data).__name__} {data!r:.80}")
        with self._lock:
            event = Event.of(data, self.seq, time.time())
            self._handle.write(event.model_dump_json() + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.seq += 1
            self.history.append(event)
            for listener in self.listeners:
                listener(event)
        return event

    def close(self) -> None:
        self._handle.close()


def to_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
