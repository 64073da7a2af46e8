"""Stopping and budgets: when the loop may go on, and how a stop request reaches it.

A stop is requested by a signal (Ctrl-C, SIGTERM) or by `archlab stop RUN`, which drops a
`STOP` file into the run directory. Nodes call `safe_point()` before they start work; a
requested stop raises `StopRequested` there, so the last checkpoint is a clean place to
resume from. Budgets (wall time, GPU-hours, LLM spend) are summed over the whole run,
earlier sessions included, from the event log.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from agents.event_types import JobResult, LLMResponse
from agents.events import Event

STOP_FILE = "STOP"


class StopRequested(Exception):
    """A person asked the run to stop; it can be resumed from the last checkpoint."""


@dataclass
class Budgets:
    wall_hours: float | None = None
    gpu_hours: float | None = None
    llm_cost_usd: float | None = None


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
        """Which budget is used up, or "" when the run may start another round."""
        b = self.budgets
        if b.wall_hours is not None and wall_seconds(history, now) >= b.wall_hours * 3600:
            return f"wall-time budget of {b.wall_hours:g} h used"
        if b.gpu_hours is not None and gpu_seconds(history) >= b.gpu_hours * 3600:
            return f"GPU budget of {b.gpu_hours:g} GPU-hours used"
        if b.llm_cost_usd is not None and llm_cost(history) >= b.llm_cost_usd:
            return f"LLM budget of ${b.llm_cost_usd:g} spent"
        return ""


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
