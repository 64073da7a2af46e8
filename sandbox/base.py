"""The `Sandbox` and `Worker` protocols and what every backend shares: the job directory and reading results back.

A job directory on the host holds `job.json`, `inputs/` (the candidate and held-out inputs,
read-only to the job) and `out/` (the only place the job may write). Backends differ in how
they run `python -m sandbox.runner` over it; they all classify the outcome the same way here.

A `Worker` is a warm, one-shot sandbox: started (`backend.spawn(limits, devices)`) before its
job is known, with the runner's imports done, it takes exactly one job and exits. Its
isolation is the backend's own, set up at spawn exactly as for a cold job of the same limits.
`sandbox.warm.WarmSandbox` keeps one ready per limits profile.

Capabilities a backend may declare (`backend.capabilities`, read by the conformance suite and
by the harness before it sends a job that relies on one): `no_network`, `pid_namespace`,
`readonly_root`, `hidden_home`, `pid_limit`, `memory_limit` (else `address_space_only`),
`cpu_quota` (`Limits.cpus` is enforced: more threads buy no more CPU time per wall second) and
`hidden_paths` (`Limits.hidden_paths` cannot be read by the job, cold or warm).

Hidden paths are covered when a sandbox starts. `hidden_state` records what each one was then,
so a warm worker started before a hidden path was created, replaced or moved is not given a job
(`sandbox.handoff.hand_over` raises `WorkerLost`, and a fresh worker covers the path as it is now).
"""
from __future__ import annotations

import collections
import json
import math
import os
import sysconfig
import threading
from pathlib import Path
from typing import IO, Iterable, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, Field, ValidationError, field_validator

from wire.jobs import EvalJob, EvalResult, Limits, Status

LOG_TAIL_BYTES = 16_384      # how much of stdout/stderr a result keeps
REPORT_MAX_BYTES = 1_000_000  # a larger report.json is refused unread


@runtime_checkable
class Sandbox(Protocol):
    """Runs one job in isolation and returns its classified result. Never raises for candidate faults."""

    name: str

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult: ...


class SandboxUnavailable(RuntimeError):
    """The backend cannot run anything here (engine down, image missing): an infrastructure fault."""


class WorkerLost(RuntimeError):
    """The worker died before it took its job: the job did not run; run it elsewhere."""


@runtime_checkable
class Worker(Protocol):
    """One warm, one-shot sandbox for jobs of one limits profile (see the module docstring)."""

    name: str                     # backend name, "process" or "docker"
    limits: Limits                # the profile it was started for
    devices: tuple[str, ...]      # GPU indices it may see; () = none
    refused: str                  # why the backend would not start it for these limits ("" when it did)

    def wait_ready(self, timeout: float) -> bool:
        """True once its imports are done and it waits for a job."""
        ...

    def alive(self) -> bool: ...

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        """Run `job` (at most once per worker), classified exactly like the cold path; raises WorkerLost only
        if the worker died before taking the job, ValueError if the job's limits are not its profile.
        The backends' workers also take `on_taken`, a callable run right after the handoff (WarmSandbox
        starts the replacement worker there)."""
        ...

    def discard(self) -> None:
        """Kill and clean up a worker that will not be used (idempotent)."""
        ...


class Spawner(Protocol):
    """A backend that can start warm workers."""

    name: str

    def spawn(self, limits: Limits, devices: Sequence[str] = ()) -> Worker: ...


def profile(limits: Limits) -> tuple:
    """What a worker is started for: the limits without the wall clock, which the host enforces per job."""
    return tuple(sorted(limits.model_dump(exclude={"wall_seconds"}).items()))


def check_fits(worker_limits: Limits, job: EvalJob) -> None:
    """ValueError unless `job` may run on a worker started for `worker_limits`."""
    if profile(worker_limits) != profile(job.limits):
        raise ValueError(f"job {job.job_id} has limits {job.limits.model_dump(exclude={'wall_seconds'})}, but the "
                         f"worker was started for {worker_limits.model_dump(exclude={'wall_seconds'})}; only "
                         "wall_seconds may differ — spawn a worker for this profile")


def hidden_state(paths: Iterable[str]) -> tuple:
    """What each hidden path is now: where it resolves to and which file that is (None if missing)."""
    state: list[tuple[str, str, int | None, int | None]] = []
    for path in paths:
        real = os.path.realpath(path)
        try:
            found = os.stat(real)
            state.append((path, real, found.st_dev, found.st_ino))
        except OSError:
            state.append((path, real, None, None))
    return tuple(state)


def interpreter_paths() -> list[Path]:
    """The directories any job's interpreter imports from (standard library, site-packages)."""
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return [Path(p) for p in {sysconfig.get_paths().get(n) for n in names} if p]


def hidden_conflict(hidden_paths: Iterable[str], needed: Iterable[Path]) -> str:
    """Why these hidden paths cannot be hidden from a job that needs `needed` to run, or "" if they can.

    A hidden path that is, or contains, the interpreter, the project or the job's own directory
    would stop the job from starting at all: that is a configuration fault, said once, up front."""
    resolved = [Path(os.path.realpath(n)) for n in needed]
    for path in hidden_paths:
        real = Path(os.path.realpath(path))
        for need in resolved:
            if need == real or real in need.parents:
                return (f"hidden path {path} contains {need}, which the sandboxed job needs to run (its interpreter, "
                        "the project's runner packages or the job's own directory); hide the files inside it that "
                        "must stay secret instead")
    return ""


def write_job(job: EvalJob, jobdir: Path) -> None:
    """Lay out `jobdir` for a job; the caller may add held-out inputs to `inputs/` afterwards."""
    (jobdir / "inputs").mkdir(parents=True, exist_ok=True)
    (jobdir / "out").mkdir(exist_ok=True)
    (jobdir / "inputs" / "candidate.py").write_text(job.source)
    (jobdir / "job.json").write_text(job.model_dump_json())


class TailBuffer:
    """Keeps the last `limit` bytes of a stream, so a flooding candidate cannot flood memory."""

    def __init__(self, limit: int = LOG_TAIL_BYTES):
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self.total += len(data)
        while self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        data = b"".join(self.chunks)[-self.limit:]
        prefix = f"[... {self.total - len(data)} earlier bytes dropped ...]\n" if self.total > len(data) else ""
        return prefix + data.decode("utf-8", errors="replace")

    def drain(self, stream: IO[bytes]) -> threading.Thread:
        def pump() -> None:
            for chunk in iter(lambda: stream.read(65536), b""):
                self.feed(chunk)
        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread


class RunnerReport(BaseModel):
    """What the runner may claim; anything outside these bounds is refused."""

    status: Status
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    message: str = Field(default="", max_length=20_000)
    environment: dict[str, str] = Field(default_factory=dict, max_length=32)
    curve: list[float] = Field(default_factory=list, max_length=2000)
    traceback: str = Field(default="", max_length=20_000)
    timings: dict[str, float] = Field(default_factory=dict, max_length=16)
    functional_hash: str = Field(default="", max_length=64, pattern=r"^[0-9a-f]*$")  # evaluators.funchash

    @field_validator("metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for key, number in value.items():
            if not math.isfinite(number) or abs(number) > 1e18:
                raise ValueError(f"metric {key}={number} is not a finite number in range")
        return value


def read_report(out: Path) -> tuple[RunnerReport | None, str]:
    """The validated report, or None and why it could not be believed."""
    path = out / "report.json"
    if not path.is_file():
        return None, "the runner wrote no report"
    if path.stat().st_size > REPORT_MAX_BYTES:
        return None, f"report.json is {path.stat().st_size} bytes, over the {REPORT_MAX_BYTES} limit"
    try:
        return RunnerReport.model_validate(json.loads(path.read_text())), ""
    except (ValueError, ValidationError) as exc:
        return None, f"report.json failed validation: {str(exc)[:500]}"


def result_from_report(job: EvalJob, report: RunnerReport, log_tail: str, timings: dict[str, float]) -> EvalResult:
    message = report.message
    if report.traceback:
        message = f"{message}\n{report.traceback}".strip()
    return EvalResult(job_id=job.job_id, candidate_id=job.candidate_id, fidelity=job.fidelity,
                      status=report.status, metrics=dict(report.metrics), message=message, log_tail=log_tail,
                      curve=[v for v in report.curve if math.isfinite(v)],
                      timings={**report.timings, **timings},
                      environment={**report.environment,
                                   **({"functional_hash": report.functional_hash} if report.functional_hash else {})})


def failure(job: EvalJob, status: Status, message: str, log_tail: str = "",
            timings: dict[str, float] | None = None) -> EvalResult:
    return EvalResult(job_id=job.job_id, candidate_id=job.candidate_id, fidelity=job.fidelity,
                      status=status, message=message, log_tail=log_tail, timings=timings or {})
