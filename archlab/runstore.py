"""Run directories: create them, find them, list them, and read their records back.

    runs/<run-id>/run.json          resolved settings, task spec, versions
    runs/<run-id>/events.jsonl      the append-only event log
    runs/<run-id>/candidates/<id>/  one directory per candidate (see agents.recorder)
    runs/<run-id>/checkpoints.sqlite  LangGraph checkpoints
    runs/<run-id>/knowledge/        the Chroma store (unless a shared one is configured)
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from agents.events import read_events
from agents.recorder import load_candidates
from agents.records import Candidate

RUN_SCHEMA_VERSION = 1


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def create_run(runs_dir: Path, record: dict) -> tuple[str, Path]:
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id()
        run_dir = runs_dir / run_id
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    (run_dir / "run.json").write_text(json.dumps({"schema_version": RUN_SCHEMA_VERSION, "run_id": run_id,
                                                   **record}, indent=1, default=str))
    return run_id, run_dir


class RunNotFound(LookupError):
    pass


def find_run(runs_dir: Path, run: str) -> Path:
    """A run by directory path, exact id, or unique id prefix."""
    path = Path(run)
    if (path / "run.json").is_file():
        return path
    exact = runs_dir / run
    if (exact / "run.json").is_file():
        return exact
    matches = sorted(p for p in runs_dir.glob(f"{run}*") if (p / "run.json").is_file())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run {run!r} in {runs_dir}; `archlab runs` lists them")
    raise RunNotFound(f"{run!r} matches {len(matches)} runs; give more of the id")


@dataclass
class RunSummary:
    run_id: str
    path: Path
    task: str
    started: str
    candidates: int
    best: Candidate | None
    state: str


def summarize(run_dir: Path) -> RunSummary:
    record = json.loads((run_dir / "run.json").read_text())
    candidates = load_candidates(run_dir)
    scored = [c for c in candidates if c.metric("accuracy") is not None and c.status != "reference"]
    best = max(scored, key=lambda c: c.metric("accuracy"), default=None)
    events, _ = read_events(run_dir / "events.jsonl")
    state = "finished" if events and events[-1].type == "run_finished" else (
        "failed" if events and events[-1].type == "run_failed" else "unfinished")
    return RunSummary(run_id=record["run_id"], path=run_dir, task=record.get("settings", {}).get("task", "?"),
                      started=record.get("started", ""), candidates=len(candidates), best=best, state=state)


def list_runs(runs_dir: Path) -> list[RunSummary]:
    if not runs_dir.is_dir():
        return []
    return [summarize(p) for p in sorted(runs_dir.iterdir()) if (p / "run.json").is_file()]
