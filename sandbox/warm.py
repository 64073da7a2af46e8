"""`WarmSandbox`: a `Sandbox` whose jobs find a warm, one-shot worker already waiting.

It wraps a backend that can `spawn` workers (`ProcessSandbox`, `DockerSandbox`) and keeps at
most one idle worker per limits profile (the limits without `wall_seconds`, on this sandbox's
`devices`). `run(job)` takes the waiting worker of the job's profile (or spawns one), hands
the job over, and right after the handoff spawns the replacement, so that the next job of
that profile finds one ready while this one runs.

Why this is as safe as the cold path: a worker is not a pool process that runs job after
job. It is a fresh sandbox — a new `unshare`d, confined, cgrouped process tree (forked from
the process backend's zygote, `sandbox.zygote`, which holds torch, numpy and the evaluators
already, or a fresh interpreter that imports them), or a new container — created with exactly
the options a cold job of the same limits gets, started before its job is known; it has the
runner's imports done (trusted code, no candidate yet), takes exactly one job, and exits. Nothing a candidate does can reach the
next candidate, because the next candidate runs in a different sandbox that was created
beside it, not after it, and that its PID/mount namespaces or container hide from it. The
only job-specific limit a worker could not know at spawn (CPU seconds, which follow the
wall clock) is lowered by the trusted runner before the candidate is imported; the wall
clock is enforced by the host from the handoff.

A worker lost before it takes its job (dead while waiting, not ready in time, `WorkerLost`)
is discarded and reported as `on_event("worker_replaced", job_id=..., reason=...)`, and the
job runs on a fresh worker: a job is never run twice (a worker that said "taken" is never
retried) and never lost (after `MAX_ATTEMPTS` lost workers in a row the job gets a
`sandbox_error` result). A worker the backend refused to start for its limits (`refused`: a
hidden path that holds what the job needs to run) makes the job a `sandbox_error` at once,
with the backend's reason. `close()` discards the idle workers; so does interpreter exit.

One instance serves one thread at a time (one per executor slot); its state is still
guarded by a lock.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from pathlib import Path
from typing import Callable, Sequence

from sandbox.base import Spawner, Worker, WorkerLost, failure, profile
from sandbox.handoff import READY_TIMEOUT
from wire.jobs import EvalJob, EvalResult, Limits

MAX_ATTEMPTS = 3        # fresh workers tried for one job before it is a sandbox_error

_OPEN: weakref.WeakSet = weakref.WeakSet()


class WarmSandbox:
    """A `Sandbox` over `backend` whose jobs run on pre-spawned one-shot workers."""

    def __init__(self, backend: Spawner, devices: Sequence[str] = (),
                 on_event: Callable[..., None] = lambda kind, **info: None, ready_timeout: float = READY_TIMEOUT):
        self.backend = backend
        self.name = backend.name
        self.capabilities = frozenset(getattr(backend, "capabilities", frozenset()))
        self.devices = tuple(devices)
        self.on_event = on_event
        self.ready_timeout = ready_timeout
        self._idle: dict[tuple, Worker] = {}
        self._lock = threading.Lock()
        self._closed = False
        _OPEN.add(self)

    # --- workers -----------------------------------------------------------------------
    def prestart(self, limits: Limits) -> None:
        """Start a worker for jobs with these limits now, unless one is already waiting."""
        self._replenish(limits)

    def wait_ready(self, limits: Limits, timeout: float) -> bool:
        """Whether the idle worker for these limits (started if missing) is ready within `timeout` seconds."""
        self._replenish(limits)
        with self._lock:
            worker = self._idle.get(profile(limits))
        return worker is not None and worker.wait_ready(timeout)

    def idle(self, limits: Limits) -> Worker | None:
        """The worker waiting for jobs with these limits, if any (for tests and diagnostics)."""
        with self._lock:
            return self._idle.get(profile(limits))

    def _replenish(self, limits: Limits) -> None:
        with self._lock:
            if self._closed or profile(limits) in self._idle:
                return
            self._idle[profile(limits)] = self.backend.spawn(limits, self.devices)

    def _take(self, limits: Limits) -> Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("this WarmSandbox is closed")
            worker = self._idle.pop(profile(limits), None)
        return worker if worker is not None else self.backend.spawn(limits, self.devices)

    # --- the Sandbox protocol ----------------------------------------------------------
    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        reasons: list[str] = []
        for _ in range(MAX_ATTEMPTS):
            worker = self._take(job.limits)
            if getattr(worker, "refused", ""):       # a configuration fault, not a lost worker: no retry
                worker.discard()
                return failure(job, "sandbox_error", worker.refused)
            try:
                if not worker.wait_ready(self.ready_timeout):
                    state = (f"was not ready within {self.ready_timeout:g} s" if worker.alive()
                             else "died before taking the job")
                    detail = f" ({worker.why_lost()})" if hasattr(worker, "why_lost") else ""
                    raise WorkerLost(f"the {self.name} worker {state}{detail}")
                return worker.run(job, jobdir, on_taken=lambda: self._replenish(job.limits))
            except WorkerLost as exc:
                worker.discard()
                reasons.append(str(exc))
                self.on_event("worker_replaced", job_id=job.job_id, reason=str(exc))
        return failure(job, "sandbox_error", f"{MAX_ATTEMPTS} fresh {self.name} workers in a row died before taking "
                       f"the job; the job did not run. Last: {reasons[-1]}. Check that the sandbox can start at all "
                       "(`executor.warm = false` runs jobs cold)")

    def close(self) -> None:
        """Discard every idle worker; later `run` calls are refused (idempotent)."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle.values()), {}
        for worker in idle:
            worker.discard()


@atexit.register
def _close_all() -> None:
    for sandbox in list(_OPEN):
        sandbox.close()
