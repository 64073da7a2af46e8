"""Stopping and budgets: when the loop may go on, and how a stop request reaches it.

A stop is requested by a signal (Ctrl-C, SIGTERM) or by `archlab stop RUN`, which drops a
`STOP` file into the run directory. Nodes call `safe_point()` before they start work; a
requested stop raises `StopRequested` there, so the last checkpoint is a clean place to
resume from. Budgets (wall time, GPU-hours, LLM spend) are summed over the whole run,
earlier sessions included, from the event log.

A budget counts what is committed, not only what is spent (`committed`): a job running now
holds its GPUs for as long as such jobs take (the median wall time of finished jobs at its
fidelity, or its time so far if longer), and keeps the run going that long; an LLM request
sent and not yet answered costs what that role's answers cost (their median). So with two
long jobs in flight the run stops proposing before their cost is on the books, not after.
At a cap no new proposal is made; what runs finishes. What is not counted ahead: the later
calls a branch in flight will still make (its fixes, its analysis).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.event_types import (JobResult, JobStarted, LLMError, LLMRequest, LLMResponse, RunResumed, RunStarted,
                                SandboxError)
from agents.events import Event
from pydantic import BaseModel, Field

STOP_FILE = "STOP"


class StopRequested(Exception):
    """A person asked the run to stop; it can be resumed from the last checkpoint."""


class Budgets(BaseModel):
    """The `[budget]` section of the settings, as the loop reads it (defined here; `archlab.settings` uses it)."""

    wall_hours: float | None = Field(default=None, gt=0)    # stop proposing after this much wall time, in flight counted
    gpu_hours: float | None = Field(default=None, gt=0)     # ... after this much GPU time in jobs, in flight counted
    llm_cost_usd: float | None = Field(default=None, gt=0)  # ... after this much LLM spend, requests in flight counted


@dataclass
class RunControl:
    run_dir: Path
    budgets: Budgets = field(default_factory=Budgets)
    signalled: str = ""

    def request_stop(self, why: str) -> None:
        self.signalled = why

    def stop_reason(self) -> str:
        if self.signalled:
            return self.signalled
        if (self.run_dir / STOP_FILE).exists():
            return "archlab stop"
        return ""

    def safe_point(self) -> None:
        reason = self.stop_reason()
        if reason:
            raise StopRequested(reason)

    def clear(self) -> None:
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)
        self.signalled = ""

    def exhausted(self, history: list[Event], now: float | None = None) -> str:
        """Which budget is used up, counting what is in flight (`committed`), or "" when the run may propose more."""
        b = self.budgets
        found = committed(history, now)
        if b.wall_hours is not None and found.wall_seconds >= b.wall_hours * 3600:
            return f"wall-time budget of {b.wall_hours:g} h used{found.ahead('wall_seconds', 3600, 'h')}"
        if b.gpu_hours is not None and found.gpu_seconds >= b.gpu_hours * 3600:
            return f"GPU budget of {b.gpu_hours:g} GPU-hours used{found.ahead('gpu_seconds', 3600, 'GPU-hours')}"
        if b.llm_cost_usd is not None and found.llm_cost_usd >= b.llm_cost_usd:
            return f"LLM budget of ${b.llm_cost_usd:g} spent{found.ahead('llm_cost_usd', 1, 'USD')}"
        return ""


@dataclass(frozen=True)
class Committed:
    """What the run has spent plus what its work in flight commits it to, per budget."""

    wall_seconds: float
    gpu_seconds: float
    llm_cost_usd: float
    in_flight: dict[str, float] = field(default_factory=dict)     # the part of each that is in flight

    def ahead(self, name: str, unit: float, label: str) -> str:
        """", counting X <label> committed by work in flight" when there is some."""
        part = self.in_flight.get(name, 0.0) / unit
        return f", counting {part:.3g} {label} committed by work in flight" if part > 0 else ""


def committed(history: list[Event], now: float | None = None) -> Committed:
    """Spent so far plus committed by the jobs and LLM requests in flight (see the module docstring)."""
    now = time.time() if now is None else now
    typical = _median_by(((e.data.fidelity, e.data.timings.get("wall_seconds", 0.0))
                          for e in history if isinstance(e.data, JobResult) and "wall_seconds" in e.data.timings))
    gpu_ahead = wall_ahead = 0.0
    for started, gpus in _jobs_in_flight(history).values():
        expected = max(now - started.time, typical.get(started.data.fidelity, 0.0))
        gpu_ahead += gpus * expected
        wall_ahead = max(wall_ahead, expected - (now - started.time))
    answer_cost = _median_by((e.data.role, e.data.cost_usd) for e in history if isinstance(e.data, LLMResponse))
    llm_ahead = sum(answer_cost.get(request.role, 0.0) for request in _requests_in_flight(history))
    return Committed(wall_seconds(history, now) + wall_ahead, gpu_seconds(history) + gpu_ahead,
                     llm_cost(history) + llm_ahead,
                     {"wall_seconds": wall_ahead, "gpu_seconds": gpu_ahead, "llm_cost_usd": llm_ahead})


def _this_session(history: list[Event]) -> list[Event]:
    """The events since the run was last started or resumed (what runs now was started in it)."""
    starts = [i for i, e in enumerate(history) if isinstance(e.data, (RunStarted, RunResumed))]
    return history[starts[-1]:] if starts else history


def _jobs_in_flight(history: list[Event]) -> dict[str, tuple[Event, int]]:
    """job id -> (its `job_started` event, the GPUs it holds) for jobs of this session without an outcome yet."""
    running: dict[str, tuple[Event, int]] = {}
    for event in _this_session(history):
        if isinstance(event.data, JobStarted):
            running[event.data.job_id] = (event, event.data.gpus)
        elif isinstance(event.data, (JobResult, SandboxError)):
            running.pop(event.data.job_id, None)
    return running


def _requests_in_flight(history: list[Event]) -> list[LLMRequest]:
    """LLM requests of this session with neither an answer nor an error yet."""
    pending: dict[tuple[str, int], LLMRequest] = {}
    for event in _this_session(history):
        if isinstance(event.data, LLMRequest):
            pending[(event.data.call_id, event.data.attempt)] = event.data
        elif isinstance(event.data, (LLMResponse, LLMError)):
            pending.pop((event.data.call_id, event.data.attempt), None)
    return list(pending.values())


def _median_by(pairs) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(float(value))
    return {key: statistics.median(values) for key, values in groups.items()}


def wall_seconds(history: list[Event], now: float | None = None) -> float:
    """Wall time the run has been driven, summed over sessions (each start/resume to its last event, or now)."""
    sessions: list[list[float]] = []
    for event in history:
        if event.type in ("run_started", "run_resumed"):
            sessions.append([event.time, event.time])
        elif sessions:
            sessions[-1][1] = event.time
    if sessions:
        sessions[-1][1] = max(sessions[-1][1], now if now is not None else time.time())
    return sum(last - first for first, last in sessions)


def gpu_seconds(history: list[Event]) -> float:
    return sum(e.data.timings.get("wall_seconds", 0.0) * e.data.gpus for e in history if isinstance(e.data, JobResult))


def llm_cost(history: list[Event]) -> float:
    return sum(e.data.cost_usd for e in history if isinstance(e.data, LLMResponse))
