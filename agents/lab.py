"""The services the graph's nodes share: task, engine, executor, knowledge store, recorder, limits, control.

Built once per run by the application shell and closed over by the nodes; nothing here is
global state, and nothing here carries state from one node to the next (that is the
checkpointed graph state's job). Several branches of a round call into one `Lab` from
different threads: `run_job` runs a job id at most once at a time (a second caller waits for
the first and reads its result), and `shared` serialises the writes that span candidates
(the Pareto front).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agents import anchors
from agents.anchors import AnchorPolicy
from agents.control import RunControl
from agents.engine import ResearchEngine
from agents.events import EventLog
from agents.recorder import Recorder
from agents.records import Candidate
from evaluators.fitness import Objective
from evaluators.harness import evaluate
from wire.task import TaskSpec
from knowledge.store import KnowledgeStore
from sandbox.base import Sandbox, SandboxUnavailable
from wire.jobs import EvalJob, EvalResult, Limits

Evaluator = Callable[[Sandbox, EvalJob, Path], EvalResult]
LOGGED_TAIL = 2000  # characters of a job's log kept in its result event


@dataclass
class LoopLimits:
    rounds: int
    max_fix_attempts: int = 2          # how many times a failed check goes back to the coder
    explore: float = 0.25              # chance of picking a parent at random instead of the best
    findings_k: int = 5                # nearest findings retrieved per plan
    keep_proxy: float | None = None    # top share of proxy-ranked candidates trained at `short`; None: no proxy rung
    promote_fraction: float = 0.0      # top share of short-ranked candidates trained at `full` (0: none)
    full_seeds: int = 3                # seeds per `full` evaluation (mean and confidence interval)
    noise_seeds: int = 2               # runs of each baseline at `short` in round 0: their spread is the noise floor
    random_pool: int = 0               # random architectures trained in round 0 as the "better than random" yardstick
    review_policy: str = "never"       # never | always | before-full | new-idea
    batch: int = 1                     # candidates proposed and evaluated concurrently per round
    check_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=120))
    train_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=600))


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
    _jobs: dict[str, threading.Lock] = field(default_factory=dict)

    @property
    def parallelism(self) -> int:
        """How many jobs can run at once."""
        return getattr(self.executor, "workers", 1) if self.executor is not None else 1

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
            if not any(e.type == "result" and e.payload.get("job_id") == job_id for e in self.events.history):
                self._log_result(job_id, candidate, fidelity, result)   # killed between the write and the event
            self.events.emit("job_reused", job_id=job_id, candidate_id=candidate.id, fidelity=fidelity)
            return result
        limits = self.limits.check_limits if fidelity == "check" else self.limits.train_limits
        items = None if whole_suite else anchors.subset_for(self, fidelity)
        job = EvalJob(job_id=job_id, run_id=self.run_id, candidate_id=candidate.id, source=candidate.source,
                      task=self.spec, fidelity=fidelity, limits=limits, seed=self.seed + seed_index, items=items)
        self.events.emit("job_started", job_id=job_id, candidate_id=candidate.id, fidelity=fidelity,
                         sandbox=self.sandbox.name, source_hash=candidate.source_hash, seed=job.seed,
                         items=items.id if items is not None else None)
        if self.executor is not None:
            result = self.executor.run(job, jobdir, self.evaluator)
        else:
            result = self.evaluator(self.sandbox, job, jobdir)
        result.environment.setdefault("seed", job.seed)
        if result.status == "sandbox_error":    # an infrastructure fault: stop, do not blame the candidate
            self.events.emit("sandbox_error", job_id=job_id, message=result.message)
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
        self.events.emit("result", job_id=job_id, candidate_id=candidate.id, fidelity=fidelity,
                         status=result.status, metrics=result.metrics, message=result.message[:2000],
                         timings=result.timings, gpus=self.limits.train_limits.gpus if fidelity != "check" else 0,
                         result=logged.model_dump())
