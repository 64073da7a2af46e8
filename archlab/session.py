"""Wires a run together — settings to sandbox, engine, knowledge store, event log and graph — and drives it.

The graph is invoked with synchronous durability and the SQLite checkpointer in the run
directory, so a killed run resumes from its last finished node.
"""
from __future__ import annotations

import json
import platform
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from langgraph.checkpoint.sqlite import SqliteSaver

from agents.engine import make_engine
from agents.events import EventLog
from agents.graph import build_graph
from agents.lab import Lab, LoopLimits
from agents.recorder import Recorder
from archlab.runstore import create_run
from archlab.settings import Settings
from evaluators.tasks import get_task
from knowledge.embedders import make_embedder
from knowledge.store import KnowledgeStore
from sandbox.base import Sandbox, SandboxUnavailable
from sandbox.contract import Limits

RECURSION_LIMIT = 10_000   # graph steps per invocation; a round takes about 8


def make_sandbox(settings: Settings) -> Sandbox:
    if settings.sandbox.backend == "process":
        from sandbox.process import ProcessSandbox
        return ProcessSandbox()
    try:
        from sandbox.docker_backend import DockerSandbox
    except ImportError as exc:
        raise SandboxUnavailable(f"the docker backend is not available: {exc}") from None
    return DockerSandbox.connect()


def job_limits(settings: Settings, seconds: float, gpus: int) -> Limits:
    s = settings.sandbox
    return Limits(wall_seconds=seconds, memory_mb=s.memory_mb, cpus=s.cpus, gpus=gpus, pids=s.pids)


@contextmanager
def open_lab(settings: Settings, run_id: str, run_dir: Path,
             on_stage: Callable[[int, str], None] = lambda r, s: None) -> Iterator[Lab]:
    spec = get_task(settings.task).default_spec(**dict(settings.task_options)).model_copy(update={"seed": settings.seed})
    events = EventLog(run_dir / "events.jsonl")
    store = KnowledgeStore(settings.knowledge.path or run_dir / "knowledge", make_embedder(settings.knowledge.embedder))
    limits = LoopLimits(rounds=settings.rounds, max_fix_attempts=settings.loop.max_fix_attempts,
                        explore=settings.loop.explore, findings_k=settings.knowledge.k,
                        check_limits=job_limits(settings, settings.sandbox.check_seconds, 0),
                        train_limits=job_limits(settings, settings.sandbox.train_seconds, settings.sandbox.gpus))
    lab = Lab(run_id=run_id, run_dir=run_dir, spec=spec, engine=make_engine(settings.llm.backend, settings.seed, settings),
              sandbox=make_sandbox(settings), store=store, events=events, recorder=Recorder(run_dir, events),
              limits=limits, seed=settings.seed, on_stage=on_stage)
    try:
        yield lab
    finally:
        events.close()


def start_run(settings: Settings) -> tuple[str, Path]:
    """Create the run directory and write the resolved settings; nothing runs yet."""
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": json.loads(settings.model_dump_json()),
              "versions": {"python": platform.python_version(), "torch": torch.__version__}}
    return create_run(settings.runs_dir, record)


def drive(lab: Lab, resume: bool = False) -> dict:
    """Run the graph to the end of its round budget; returns the final state."""
    connection = sqlite3.connect(lab.run_dir / "checkpoints.sqlite", check_same_thread=False)
    try:
        graph = build_graph(lab, SqliteSaver(connection))
        config = {"configurable": {"thread_id": lab.run_id}, "recursion_limit": RECURSION_LIMIT}
        lab.events.emit("run_resumed" if resume else "run_started", run_id=lab.run_id, task=lab.spec.name,
                        rounds=lab.limits.rounds, engine=lab.engine.name, sandbox=lab.sandbox.name,
                        spec=lab.spec.model_dump())
        try:
            state = graph.invoke(None if resume else {"round": 0, "tried": []}, config, durability="sync")
        except Exception as exc:
            lab.events.emit("run_failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        lab.events.emit("run_finished", rounds=state.get("round", 0))
        return state
    finally:
        connection.close()
