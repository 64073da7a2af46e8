"""Wires a run together — settings to sandbox, engine, knowledge store, event log and graph — and drives it.

The graph is invoked with synchronous durability and the checkpointer `checkpoints.url` names
(`archlab.checkpoints`: SQLite in the run directory by default, or Postgres), so a killed run
resumes from its last finished node. Review interrupts are
answered through decision files in `<run>/reviews/` (written by `archlab review` or the
review page); a waiting run polls for them.
"""
from __future__ import annotations

import json
import os
import platform
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from langgraph.types import Command

from agents.control import RunControl, StopRequested
from agents.event_types import (LogRepaired, ReviewWaiting, RunFailed, RunFinished, RunResumed, RunStarted, RunStopped,
                                payload_model)
from agents.events import EventLog
from agents.graph import build_candidate_graph, build_graph
from agents.scheduler import BranchPool
from agents.lab import Lab
from agents.limits import LoopLimits
from agents.recorder import Recorder
from archlab.backends import capacity, make_engine, make_executor
from archlab.sandboxes import make_sandbox
from archlab.checkpoints import open_checkpointer
from archlab.reviews import read_decision, waiting_requests
from archlab.runstore import OWNER_FILE, create_run
from archlab.resolved import make_objective, task_spec
from archlab.settings import Settings
from knowledge.embedders import make_embedder
from knowledge.store import KnowledgeStore
from sandbox.base import Sandbox
from wire.jobs import Limits

RECURSION_LIMIT = 10_000   # graph steps per invocation; a round takes about 8


def job_limits(settings: Settings, seconds: float, gpus: int) -> Limits:
    s = settings.sandbox
    cpus = s.cpus if s.cpus is not None else capacity(settings).cpus_per_job
    return Limits(wall_seconds=seconds, memory_mb=s.memory_mb, cpus=cpus, gpus=gpus, pids=s.pids)


def resolve_machine(settings: Settings) -> Settings:
    """Settings with the batch size fixed (`loop.batch`, default: the workers this machine runs), so a run keeps
    its batch when resumed elsewhere."""
    if settings.loop.batch is not None:
        return settings
    loop = settings.loop.model_copy(update={"batch": capacity(settings).workers})
    return settings.model_copy(update={"loop": loop})


@contextmanager
def open_lab(settings: Settings, run_id: str, run_dir: Path, on_stage: Callable[[int, str], None] = lambda r, s: None,
             engine=None, sandbox: Sandbox | None = None, evaluator=None, spec=None) -> Iterator[Lab]:
    """The services of one run; `engine`, `sandbox` and `evaluator` override the settings (replay uses this), and
    `spec` is the task's spec when the caller built it already (the CLI's pre-run check)."""
    settings = resolve_machine(settings)
    events = EventLog(run_dir / "events.jsonl")
    if events.repaired_bytes:
        events.emit(LogRepaired(dropped_bytes=events.repaired_bytes))
    store = KnowledgeStore(settings.knowledge.path or run_dir / "knowledge", make_embedder(settings.knowledge.embedder),
                           url=settings.knowledge.url)
    limits = LoopLimits(rounds=settings.rounds, loop=settings.loop, findings_k=settings.knowledge.k,
                        review_policy=settings.review.policy,
                        check_limits=job_limits(settings, settings.sandbox.check_seconds, 0),
                        train_limits=job_limits(settings, settings.sandbox.train_seconds, settings.sandbox.gpus))
    lab = Lab(run_id=run_id, run_dir=run_dir, spec=spec or task_spec(settings),
              engine=engine or make_engine(settings.llm.backend, settings.seed, settings),
              sandbox=sandbox or make_sandbox(settings), store=store, events=events,
              recorder=Recorder(run_dir, events), limits=limits, control=RunControl(run_dir, settings.budget),
              seed=settings.seed, objective=make_objective(settings), suite=settings.suite, on_stage=on_stage)
    if evaluator is not None:
        lab.evaluator = evaluator
    if hasattr(lab.engine, "attach"):       # an engine that logs its own calls (openai) writes to this run's log
        lab.engine.attach(lab)
    lab.executor = make_executor(settings, lab.sandbox, on_event=lambda kind, **info: events.emit(payload_model(kind)(**info)))
    lab.executor.prestart([limits.check_limits, limits.train_limits])   # warm workers start while the run sets up
    try:
        yield lab
    finally:
        lab.executor.close()
        events.close()


def start_run(settings: Settings) -> tuple[str, Path]:
    """Create the run directory and write the resolved settings; nothing runs yet."""
    settings = resolve_machine(settings)
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": json.loads(settings.model_dump_json()),
              "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    return create_run(settings.runs_dir, record)


def drive(lab: Lab, resume: bool = False, decisions: Callable[[dict], dict | None] | None = None,
          poll_seconds: float = 1.0, on_wait: Callable[[list[ReviewWaiting]], None] = lambda pending: None,
          checkpoints: str | None = None) -> str:
    """Run the graph until it ends or stops; returns "finished" or "stopped".

    `decisions(request)` answers a review interrupt or returns None to keep waiting; by
    default decisions are read from `<run>/reviews/`. A branch waiting for its review waits
    in its own thread while the others go on. `checkpoints` is `checkpoints.url` (None:
    SQLite in the run directory).
    """
    (lab.run_dir / OWNER_FILE).write_text(str(os.getpid()))
    if resume:
        lab.control.clear()                 # a stop that ended the last session does not end this one
    stack = ExitStack()
    decide = decisions or (lambda request: read_decision(lab.run_dir, request))
    try:
        saver = stack.enter_context(open_checkpointer(checkpoints, lab.run_dir))
        branches = BranchPool(lab, build_candidate_graph(lab, saver), lab.run_id)
        stack.callback(branches.close)       # closed before the checkpointer: branches write to it until they end
        branches.wait_for_review = lambda interrupts: _wait_for_decision(lab, interrupts, decide, poll_seconds,
                                                                         on_wait)
        graph = build_graph(lab, saver, branches)
        config = {"configurable": {"thread_id": lab.run_id}, "recursion_limit": RECURSION_LIMIT}
        lab.events.emit((RunResumed if resume else RunStarted)(run_id=lab.run_id, task=lab.spec.name,
                                                               rounds=lab.limits.rounds, engine=lab.engine.name, sandbox=lab.sandbox.name,
                                                               spec=lab.spec.model_dump(), workers=lab.parallelism))
        payload = None if resume else {"round": 0, "tried": []}
        try:        # reviews are waited for inside each branch (`BranchPool.wait_for_review`), not here
            state = graph.invoke(payload, config, durability="sync")
        except StopRequested as exc:
            branches.close()            # the branches in flight stop at their next safe point (a running job ends)
            lab.events.emit(RunStopped(reason=str(exc)))
            return "stopped"
        except Exception as exc:
            branches.close()
            lab.events.emit(RunFailed(error=f"{type(exc).__name__}: {exc}"[:2000]))
            raise
        lab.events.emit(RunFinished(rounds=state.get("round", 0), reason=state.get("finished", "")))
        return "finished"
    finally:
        stack.close()
        (lab.run_dir / OWNER_FILE).unlink(missing_ok=True)


def _wait_for_decision(lab: Lab, interrupts, decide, poll_seconds: float, on_wait) -> Command:
    """Wait until a person has decided on at least one of a branch's waiting interrupts; resume those decided.

    Several branches can wait at the same time, each in its own thread; an interrupt whose
    decision is not in yet interrupts again and keeps waiting."""
    requests = []
    for waiting in interrupts:
        request = dict(waiting.value)
        request["interrupt_id"] = waiting.id
        requests.append(request)
        if not any(isinstance(e.data, ReviewWaiting) and e.data.interrupt_id == request["interrupt_id"]
                   for e in lab.events.history):
            lab.events.emit(ReviewWaiting(**{k: v for k, v in request.items() if k != "source"}))
    on_wait(waiting_requests(lab.events.history))
    while True:
        decided = {r["interrupt_id"]: d for r in requests if (d := decide(r)) is not None}
        if decided:
            return Command(resume=decided)
        lab.control.safe_point()
        time.sleep(poll_seconds)
