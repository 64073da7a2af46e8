"""The job records that cross the sandbox wall: `EvalJob` in, `EvalResult` out.

`EvalResult.status` is the whole story of a job: a timeout, an OOM or a crash is a value
here with a message a coder can act on, never an exception the caller has to parse.
"""
from __future__ import annotations

import hashlib
import posixpath
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from wire.task import Fidelity, TaskSpec

Status = Literal["ok", "invalid", "error", "timeout", "oom", "killed", "sandbox_error"]


class Limits(BaseModel):
    """Resources one job may use, and host paths it must not read.

    `cpus` is enforced where the backend declares `cpu_quota` (a CPU cgroup quota or Docker's
    `nano_cpus`): more threads buy no more CPU time per wall second. `hidden_paths` are
    absolute host paths (files or directories) the job must not be able to read, hidden where
    the backend declares `hidden_paths`; they are kept sorted and unique, so two jobs that hide
    the same paths share a warm-worker profile (`sandbox.base.profile`)."""

    wall_seconds: float = Field(default=300.0, gt=0)
    memory_mb: int = Field(default=4096, ge=64)
    cpus: float = Field(default=2.0, gt=0)
    gpus: int = Field(default=0, ge=0)
    pids: int = Field(default=256, ge=8)
    file_size_mb: int = Field(default=256, ge=1)
    hidden_paths: tuple[str, ...] = ()

    @field_validator("hidden_paths")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"hidden path {path!r} is not absolute; give the host path to hide from the job")
        return tuple(sorted({posixpath.normpath(path) for path in value}))


class ItemSubset(BaseModel):
    """Which items of the task's downstream suite a job scores, and how their scores estimate the suite's score
    (`evaluators.item_selection.AnchorSet`, as the loop chose and logged it in a `suite_anchors` event)."""

    id: str                          # the anchor set's digest, as the event names it
    method: str
    items: tuple[int, ...]
    weights: tuple[float, ...]       # per item; within a scenario they sum to 1
    scenarios: tuple[int, ...]       # per item, its scenario
    offsets: tuple[float, ...] = ()  # per scenario (sorted), the calibration fitted on the sources; () none
    scales: tuple[float, ...] = ()


SUITE_PREFIX = "suite_"   # metrics a task computes from its suite's items carry it (estimates on an anchor subset)


class ItemScores(BaseModel):
    """A job's graded items of the task's downstream suite (host side): the probability the model put on each item's
    right choice, and whether its top choice was right. Item indices mean the same only within one `suite`."""

    suite: str                       # the suite's fingerprint
    items: list[int]
    scores: list[float]
    correct: list[int]


class EvalJob(BaseModel):
    """One evaluation of one candidate at one fidelity."""

    job_id: str
    run_id: str = ""
    candidate_id: str
    source: str
    task: TaskSpec
    fidelity: Fidelity
    limits: Limits = Field(default_factory=Limits)
    seed: int = 0
    items: ItemSubset | None = None  # the suite items to score at this fidelity; None: the task's default

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


class EvalResult(BaseModel):
    """What came back from a job, classified."""

    schema_version: int = 1
    job_id: str
    candidate_id: str
    fidelity: Fidelity
    status: Status
    metrics: dict[str, float] = Field(default_factory=dict)
    curve: list[float] = Field(default_factory=list)  # training loss, sampled evenly over the steps
    message: str = ""  # for failures: what went wrong and what to change
    log_tail: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    items: ItemScores | None = None  # item-level results of the task's downstream suite, where it has one

    @property
    def ok(self) -> bool:
        return self.status == "ok"
