"""The `Executor` protocol: runs evaluation jobs, several at once, and returns classified results.

An executor never raises for a candidate's fault (those are `EvalResult` statuses); it raises
`SandboxUnavailable` only when nothing can run at all. `evaluate` is the host side of one job
(`evaluators.harness.evaluate`: lay out the job directory, run it in the given sandbox, score
the predictions); replay passes its own, which answers from the log.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from sandbox.base import Sandbox
from wire.jobs import EvalJob, EvalResult

Evaluate = Callable[[Sandbox, EvalJob, Path], EvalResult]


@dataclass(frozen=True)
class JobStarted:
    """A job that holds a worker right now (what the progress display shows)."""

    job_id: str
    fidelity: str
    worker: int          # the slot's index, 0 .. workers - 1
    devices: tuple[str, ...]
    started: float       # time.time() when it got its worker


class JobBoard:
    """The jobs an executor has in flight, by worker, and the listeners told whenever that changes (thread-safe)."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[list[JobStarted]], None]] = []
        self._running: dict[int, JobStarted] = {}
        self._lock = threading.Lock()

    def in_flight(self) -> list[JobStarted]:
        with self._lock:
            return sorted(self._running.values(), key=lambda j: j.worker)

    def changed(self, add: JobStarted | None = None, remove: int | None = None) -> None:
        with self._lock:
            if add is not None:
                self._running[add.worker] = add
            if remove is not None:
                self._running.pop(remove, None)
            now = sorted(self._running.values(), key=lambda j: j.worker)
        for listener in self.listeners:
            listener(now)


class Executor(Protocol):
    name: str
    workers: int         # jobs that can run at once

    def run(self, job: EvalJob, jobdir: Path, evaluate: Evaluate) -> EvalResult:
        """Run one job as soon as a worker is free; blocks until it has finished. Thread-safe."""

    def in_flight(self) -> list[JobStarted]: ...

    def close(self) -> None: ...
