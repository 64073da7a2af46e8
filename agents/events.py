"""The `Event` record and the append-only `events.jsonl` log of a run.

Every line is one JSON event, written and flushed before the writer moves on, so a crash
loses at most the line being written; a torn last line is detected (and can be repaired)
when the log is opened again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class Event(BaseModel):
    schema_version: int = 1
    seq: int
    time: float
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)


def read_events(path: Path) -> tuple[list[Event], int]:
    """All complete events, and the byte offset where the valid part of the file ends."""
    events: list[Event] = []
    valid_end = 0
    if not path.exists():
        return events, 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                events.append(Event.model_validate_json(line))
            except ValueError:
                break
            valid_end += len(line)
    return events, valid_end


class EventLog:
    """Appends events to `events.jsonl`; repairs a torn last line on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        events, valid_end = read_events(self.path)
        self.repaired_bytes = 0
        if self.path.exists() and self.path.stat().st_size > valid_end:
            self.repaired_bytes = self.path.stat().st_size - valid_end
            with self.path.open("r+b") as handle:
                handle.truncate(valid_end)
        self.history: list[Event] = events          # every event of the run, earlier sessions included
        self.seq = events[-1].seq + 1 if events else 0
        self._handle = self.path.open("a", encoding="utf-8")
        self.listeners: list = []

    def emit(self, type: str, **payload: Any) -> Event:
        event = Event(seq=self.seq, time=time.time(), type=type, payload=payload)
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
