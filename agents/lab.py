"""The services the graph's nodes share: task, engine, executor, knowledge store, recorder, limits, control.

Built once per run by the application shell and closed over by the nodes; nothing here is
global state, and nothing here carries state from one node to the next (that is the
checkpointed graph state's job, and the event log's). Several branches call into one `Lab`
from different threads: `run_job` runs a job id at most once at a time (a second caller
waits for the first and reads its result), and `shared` serialises the writes that span
candidates (the Pareto front).

What a decision may read: `peers(visible)` — the candidates collected before a branch was
proposed (the order of the log's `candidate_collected` events, round 0 first), never a
branch still in flight, and of those only the results of jobs run in round 0 or by a
collected branch (a branch in flight may be training a collected parent at `full`: that
result is its own until it is collected). So decisions come out the same in a replay
however jobs interleaved.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agents import anchors
from agents.anchors import AnchorPolicy
from agents.control import RunControl
from agents.engine import ResearchEngine
from agents.event_types import JobResult, JobReused, JobStarted, PlanMade, SandboxError
from agents.events import EventLog
from agents.limits import LoopLimits
from agents.recorder import Recorder
from agents.records import Candidate
from evaluators.fitness import Objective
from evaluators.harness import evaluate
from wire.task import TaskSpec
from knowledge.records import Finding
from knowledge.store import KnowledgeStore
from sandbox.base import Sandbox, SandboxUnavailable
from wire.jobs import EvalJob, EvalResult

Evaluator = Callable[[Sandbox, EvalJob, Path], EvalResult]
LOGGED_TAIL = 2000  # characters of a job's log kept in its result event
_BRANCH = threading.local()         # the branch (candidate id) this thread runs, "" outside any


@contextmanager
def in_branch(candidate_id: str):
    """Jobs started in this thread belong to this branch (logged on `job_started`; see `Lab.peers`)."""
    _BRANCH.id = candidate_id
    try:
        yield
    finally:
        _BRANCH.id = ""


def current_branch() -> str:
    return getattr(_BRANCH, "id", "")


@dataclass
class Lab:
    run_id: str
    run_dir: Path
    spec: TaskSpec
    engine: ResearchEngine
    sandbox: Sandbox
    store: KnowledgeStore
    events: EventLog
    recorder: Recorder
    limits: LoopLimits
    control: RunControl
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    suite: AnchorPolicy = field(default_factory=AnchorPolicy)    # which suite items cheaper jobs score
    on_stage: Callable[[int, str], None] = lambda round, stage: None
    evaluator: Evaluator = evaluate
    executor: object | None = None     # archlab.executors.Executor; None: jobs run one at a time in `sandbox`
    shared: threading.RLock = field(default_factory=threading.RLock)
    claiming: threading.Lock = field(default_factory=threading.Lock)   # one branch at a time logs its plan
    collect_order: list[str] | None = None   # a replay collects branches in the recorded order (None: as they end)
    _jobs: dict[str, threading.Lock] = field(default_factory=dict)
    _collected: list[str] = field(default_factory=list)
    _job_branch: dict[str, str] = field(default_factory=dict)     # job id -> the branch that started it
    _plans: dict[str, PlanMade] = field(default_factory=dict)      # candidate id -> its latest plan
    _scanned: int = 0                        # events of the log already read into the three above

    @property
    def parallelism(self) -> int:
        """How many jobs can run at once."""
        return getattr(self.executor, "workers", 1) if self.executor is not None else 1

    def collected(self) -> list[str]:
        """Candidate ids in the order their branches were collected, round 0 first (read from the log as it grows)."""
        with self.shared:
            history = self.events.history
            for event in history[self._scanned:]:
                if event.type == "candidate_collected" and event.data.candidate_id not in self._collected:
                    self._collected.append(event.data.candidate_id)
                elif event.type == "job_started" and event.data.branch:
                    self._job_branch.setdefault(event.data.job_id, event.data.branch)
                elif isinstance(event.data, PlanMade):
                    self._plans[event.data.candidate_id] = event.data
            self._scanned = len(history)
            return list(self._collected)

    def peers(self, visible: int | None, *also: str) -> list[Candidate]:
        """The candidates a decision may read: the first `visible` collected ones and the ids in `also` (the branch's
        own candidate), each without the results of jobs that a branch outside those started. `visible` None: every
        record on disk as it is (states from before visibility was recorded)."""
        records = self.recorder.load_all()
        if visible is None:
            return records
        shown = set(self.collected()[:visible]) | set(also)
        with self.shared:
            hidden = {job for job, branch in self._job_branch.items() if branch not in shown}
        return [_without_jobs(c, hidden) for c in records if c.id in shown]

    def plans_in_flight(self, but: str) -> list[PlanMade]:
        """The plans of the branches still in flight, other than `but`'s: a live engine avoids proposing them again.
        Which of them a plan sees depends on timing; no recorded decision does (a replay serves the recorded plans)."""
        collected = set(self.collected())             # reads the log's new events, plans included
        with self.shared:
            return [plan for cid, plan in self._plans.items() if cid not in collected and cid != but]

    def keeps_finding(self, visible: int | None) -> Callable[[Finding], bool] | None:
        """Which findings a branch that saw `visible` collected candidates may retrieve: any from other runs, and
        this run's about those candidates (None: all, for states from before visibility was recorded)."""
        if visible is None:
            return None
        shown = set(self.collected()[:visible])
        mine = f"{self.run_id}-"
        return lambda finding: not finding.id.startswith(mine) or set(finding.candidate_ids) <= shown

    def stage(self, round: int, stage: str) -> None:
        """Called as a node starts: a requested stop is honoured here, before any work."""
        self.control.safe_point()
        self.on_stage(round, stage)

    def run_job(self, candidate: Candidate, fidelity: str, attempt: int = 0, seed_index: int = 0,
                whole_suite: bool = False) -> EvalResult:
        """Evaluate one candidate at one fidelity (and seed); a finished job with this id is read back, not re-run.

        Seed `k` trains from `lab.seed + k`; seed 0 keeps the plain job id. `whole_suite`: score every item of the
        task's downstream suite, not the anchor set (`agents.anchors.escalate`).
        """
        kind = f"{fidelity}-whole" if whole_suite else fidelity
        job_id = f"{candidate.id}-{kind}-{attempt}" if seed_index == 0 else \
            f"{candidate.id}-{kind}-seed{seed_index}-{attempt}"
        with self.shared:
            gate = self._jobs.setdefault(job_id, threading.Lock())
        with gate:      # two branches asking for one job (a shared parent's `full`): the second reads the first's
            return self._run_job(candidate, fidelity, job_id, seed_index, whole_suite)

    def _run_job(self, candidate: Candidate, fidelity: str, job_id: str, seed_index: int,
                 whole_suite: bool = False) -> EvalResult:
        jobdir = self.recorder.job_dir(candidate.id, job_id)
        finished = jobdir / "result.json"
        if finished.is_file():
            result = EvalResult.model_validate_json(finished.read_text())
            if not any(isinstance(e.data, JobResult) and e.data.job_id == job_id for e in self.events.history):
                self._log_result(job_id, candidate, fidelity, result)   # killed between the write and the event
            self.events.emit(JobReused(job_id=job_id, candidate_id=candidate.id, fidelity=fidelity))
            return result
        limits = self.limits.check_limits if fidelity == "check" else self.limits.train_limits
        items = None if whole_suite else anchors.subset_for(self, fidelity)
        job = EvalJob(job_id=job_id, run_id=self.run_id, candidate_id=candidate.id, source=candidate.source,
                      task=self.spec, fidelity=fidelity, limits=limits, seed=self.seed + seed_index, items=items)
        self.events.emit(JobStarted(job_id=job_id, candidate_id=candidate.id, fidelity=fidelity,
                                    sandbox=self.sandbox.name, source_hash=candidate.source_hash, seed=job.seed,
                                    items=items.id if items is not None else None, branch=current_branch() or None,
                                    gpus=limits.gpus))
        if self.executor is not None:
            result = self.executor.run(job, jobdir, self.evaluator)
        else:
            result = self.evaluator(self.sandbox, job, jobdir)
        result.environment.setdefault("seed", job.seed)
        if result.status == "sandbox_error":    # an infrastructure fault: stop, do not blame the candidate
            self.events.emit(SandboxError(job_id=job_id, message=result.message))
            raise SandboxUnavailable(result.message)
        jobdir.mkdir(parents=True, exist_ok=True)
        partial = finished.with_suffix(".json.tmp")      # a kill mid-write must not leave a torn result behind
        partial.write_text(result.model_dump_json())
        os.replace(partial, finished)
        self.recorder.save_result(candidate.id, result)
        self._log_result(job_id, candidate, fidelity, result)
        return result

    def _log_result(self, job_id: str, candidate: Candidate, fidelity: str, result: EvalResult) -> None:
        logged = result.model_copy(update={"log_tail": result.log_tail[-LOGGED_TAIL:]})
        self.events.emit(JobResult(job_id=job_id, candidate_id=candidate.id, fidelity=fidelity,
                                   status=result.status, metrics=result.metrics, message=result.message[:2000],
                                   timings=result.timings, gpus=self.limits.train_limits.gpus if fidelity != "check" else 0,
                                   result=logged.model_dump()))


def _without_jobs(candidate: Candidate, hidden: set[str]) -> Candidate:
    """The candidate as it was before the jobs in `hidden` (a copy; the record itself when none of them touched it)."""
    evaluations = {f: r for f, r in candidate.evaluations.items() if r.job_id not in hidden}
    seeds = {f: [r for r in rs if r.job_id not in hidden] for f, rs in candidate.seeds.items()}
    if len(evaluations) == len(candidate.evaluations) and all(len(seeds[f]) == len(rs)
                                                              for f, rs in candidate.seeds.items()):
        return candidate
    return candidate.model_copy(update={"evaluations": evaluations, "seeds": {f: rs for f, rs in seeds.items() if rs}})
