"""The `local` executor: up to `workers` sandboxed jobs at once on this machine.

Each of the `workers` slots owns its GPU devices for the executor's lifetime (handed out
once, so two jobs never hold the same GPU unless `share_gpus`), and runs one job at a time
in its own sandbox. With `warm` (the default) a slot is a `sandbox.warm.WarmSandbox`: a
fresh one-shot worker, interpreter started and torch imported, already waits for the
slot's next job, so a job starts without paying for start-up; isolation is the backend's
own, worker by worker. Without `warm`, every job starts its sandbox on demand (the cold
path, kept for comparison).

A job's limits reach its sandbox unchanged, so the warm worker it runs on was started for
its whole profile (`sandbox.base.profile`: CPUs, memory, pids, GPUs and `hidden_paths`).
`prestart` starts workers for the profiles it is given; a job whose profile differs (one
that hides paths the prestarted limits did not name) finds no worker waiting and starts its
own, after which the slot keeps one of that profile ready.

Jobs queue for a free slot in the order they ask; a slot's worker that dies before taking
its job is replaced by the sandbox layer and the job runs on the replacement (reported to
`on_event` as `worker_replaced`). What it does not do: spread jobs over machines (that is a
cluster executor's job), or preempt a running job.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from archlab.executors.base import Evaluate, JobBoard, JobStarted
from archlab.executors.capacity import Capacity
from sandbox.base import Sandbox, WorkerLost, failure
from wire.jobs import EvalJob, EvalResult, Limits


@dataclass
class Slot:
    index: int
    devices: tuple[str, ...]
    sandboxes: dict[bool, Sandbox] = field(default_factory=dict)   # with GPUs -> the sandbox for such jobs


class LocalExecutor:
    name = "local"

    def __init__(self, backend: Sandbox, capacity: Capacity, warm: bool = True,
                 on_event: Callable[..., None] = lambda kind, **info: None):
        self.backend = backend
        self.capacity = capacity
        self.workers = capacity.workers
        self.warm = warm
        self.on_event = on_event
        self._board = JobBoard()
        self.listeners = self._board.listeners
        self._free: queue.Queue[Slot] = queue.Queue()
        self._slots: list[Slot] = []
        per_job = capacity.gpus_per_job
        for i in range(self.workers):
            devices = tuple(capacity.gpus[(i * per_job + k) % len(capacity.gpus)] for k in range(per_job)) \
                if per_job else ()
            slot = Slot(i, devices)
            self._slots.append(slot)
            self._free.put(slot)

    # --- sandboxes per slot ------------------------------------------------------------
    def _sandbox(self, slot: Slot, gpus: int) -> Sandbox:
        """The slot's sandbox for a job with `gpus` GPUs (a job without GPUs sees none of the slot's)."""
        with_gpus = gpus > 0
        if with_gpus and gpus > len(slot.devices):
            raise ValueError(f"a job asks for {gpus} GPU(s); the executor gives each worker {len(slot.devices)}")
        if with_gpus not in slot.sandboxes:
            devices = slot.devices[:gpus] if with_gpus else ()
            slot.sandboxes[with_gpus] = self._make_sandbox(slot, devices)
        return slot.sandboxes[with_gpus]

    def _make_sandbox(self, slot: Slot, devices: tuple[str, ...]) -> Sandbox:
        if self.warm and hasattr(self.backend, "spawn"):
            from sandbox.warm import WarmSandbox
            return WarmSandbox(self.backend, devices=devices,  # type: ignore[arg-type]
                               on_event=lambda kind, **info: self.on_event(kind, worker=slot.index, **info))
        if devices:
            return _OnDemand(self.backend, devices)
        return self.backend

    def prestart(self, limits: list[Limits]) -> None:
        """Start a worker for each of these job profiles in every slot, ahead of the first job (warm only)."""
        if not self.warm:
            return
        for slot in self._slots:
            for profile in limits:
                sandbox = self._sandbox(slot, profile.gpus)
                if hasattr(sandbox, "prestart"):
                    sandbox.prestart(profile)

    # --- jobs --------------------------------------------------------------------------
    def run(self, job: EvalJob, jobdir: Path, evaluate: Evaluate) -> EvalResult:
        slot = self._free.get()
        try:
            started = JobStarted(job.job_id, job.fidelity, slot.index, slot.devices if job.limits.gpus else (),
                                 time.time())
            self._changed(add=started)
            sandbox = self._sandbox(slot, job.limits.gpus)
            return evaluate(sandbox, job, jobdir)
        finally:
            self._changed(remove=slot.index)
            self._free.put(slot)

    def in_flight(self) -> list[JobStarted]:
        return self._board.in_flight()

    def _changed(self, add: JobStarted | None = None, remove: int | None = None) -> None:
        self._board.changed(add, remove)

    def close(self) -> None:
        for slot in self._slots:
            for sandbox in slot.sandboxes.values():
                if hasattr(sandbox, "close"):
                    sandbox.close()


class _OnDemand:
    """A cold slot with GPUs: the worker starts when its job arrives, on the slot's devices."""

    def __init__(self, backend, devices: tuple[str, ...]):
        self.backend = backend
        self.devices = devices
        self.name: str = backend.name
        self.capabilities: frozenset[str] = getattr(backend, "capabilities", frozenset())

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        worker = self.backend.spawn(job.limits, self.devices)
        refused = getattr(worker, "refused", "")      # as WarmSandbox reads it: test doubles may not say
        if refused:
            worker.discard()
            return failure(job, "sandbox_error", refused)
        try:
            return worker.run(job, jobdir)
        except WorkerLost as exc:
            return failure(job, "sandbox_error", f"the sandbox did not start: {exc}")
