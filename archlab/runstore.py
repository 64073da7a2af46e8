"""Run directories: create them, find them, list them, and read their records back.

    runs/<run-id>/run.json          resolved settings, task spec, versions
    runs/<run-id>/events.jsonl      the append-only event log
    runs/<run-id>/candidates/<id>/  one directory per candidate (see agents.recorder)
    runs/<run-id>/checkpoints.sqlite  LangGraph checkpoints
    runs/<run-id>/knowledge/        the Chroma store (unless a shared one is configured)
    runs/<run-id>/owner.pid         the pid of the process driving the run, while one does

Reading a run never imports torch: `archlab runs`, `show` and `review` stay fast.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from agents import scoring
from agents.event_types import LogRepaired, ReviewWaiting, SettingsOverridden
from agents.events import EventLog, read_events
from agents.recorder import load_candidates
from archlab.resolved import make_objective
from archlab.reviews import read_decision, waiting_requests
from archlab.settings import Settings, SettingsError, load_settings, read_config, recorded_settings
from evaluators.fitness import Objective

RUN_SCHEMA_VERSION = 1
OWNER_FILE = "owner.pid"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def create_run(runs_dir: Path, record: dict) -> tuple[str, Path]:
    # the objective resolved once, here (the task's metric needs the task registry, and so torch), so that
    # reading the run later (`archlab runs`, `show`) needs neither
    objective = run_objective(record).model_dump(mode="json")
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
                                                   **record, "objective": objective}, indent=1, default=str))
    return run_id, run_dir


# what `archlab resume --config` may change: where the model answers and where jobs run; the rest is the experiment
RESUMABLE_TABLES = ("llm", "sandbox")


def override_settings(record: dict, config: Path):
    """The run's settings (from run.json `record`) with the `[llm]` and `[sandbox]` tables of `config` laid over
    them, and what changed: `{"llm.base_url": {"from": ..., "to": ...}}`.

    A table or top-level key other than those two, or a key those tables do not have, is a
    `SettingsError` naming it; nothing is written. Values are validated as at `archlab run`.
    """
    values = read_config(config)
    others = [f"[{k}]" if isinstance(v, dict) else repr(k) for k, v in values.items() if k not in RESUMABLE_TABLES]
    if others:
        raise SettingsError(f"config file {config}: a resumed run may change only its [llm] and [sandbox] tables, "
                            f"not {', '.join(others)}; start a new run (`archlab run --config`) to change those")
    old = record["settings"]
    merged = dict(old)
    for table, table_values in values.items():
        if not isinstance(table_values, dict):
            raise SettingsError(f"config file {config}: '{table}' must be a table ([{table}])")
        fields = Settings.model_fields[table].annotation.model_fields
        unknown = [k for k in table_values if k not in fields]
        if unknown:    # never echo the value: a misplaced key may be a secret
            raise SettingsError(f"config file {config}: unknown setting {', '.join(f'{table}.{k}' for k in unknown)}"
                                f"; [{table}] has {', '.join(fields)}")
        merged[table] = {**old.get(table, {}), **table_values}
    settings = load_settings(None, **merged)
    new = json.loads(settings.model_dump_json())
    changed = {f"{table}.{key}": {"from": old.get(table, {}).get(key), "to": value}
               for table in values for key, value in new[table].items() if old.get(table, {}).get(key) != value}
    return settings, changed


def record_override(run_dir: Path, settings, changed: dict, config: Path) -> None:
    """Log a `settings_overridden` event and write the new settings, with a note of the change, into run.json."""
    events = EventLog(run_dir / "events.jsonl")
    try:
        if events.repaired_bytes:
            events.emit(LogRepaired(dropped_bytes=events.repaired_bytes))
        events.emit(SettingsOverridden(config=str(config), changed=changed))
    finally:
        events.close()
    path = run_dir / "run.json"
    record = json.loads(path.read_text())
    record["settings"] = json.loads(settings.model_dump_json())
    record.setdefault("overrides", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": str(config),
                                               "changed": changed})
    scratch = path.with_name("run.json.tmp")
    scratch.write_text(json.dumps(record, indent=1, default=str))
    os.replace(scratch, path)          # a crash leaves the old record or the new one, never half of one


def owner_alive(run_dir: Path) -> bool:
    """Whether a live process is driving this run (its pid is in `owner.pid`)."""
    try:
        pid = int((run_dir / OWNER_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


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
    best: scoring.Score | None        # by the run's objective, whatever produced it
    state: str
    objective: Objective | None = None   # None: run.json's settings cannot be read by this version
    standing: scoring.Standing | None = None   # the best's lead, or who it is tied with within the noise


def run_objective(record: dict) -> Objective:
    """The objective a run is scored by, from the resolved settings in its run.json `record`.

    ValueError (or KeyError) when those settings cannot be read."""
    if "objective" in record:                       # resolved by create_run: no task registry, no torch
        return Objective.model_validate(record["objective"])
    return make_objective(recorded_settings(record["settings"]))


def summarize(run_dir: Path) -> RunSummary:
    record = json.loads((run_dir / "run.json").read_text())
    candidates = load_candidates(run_dir)
    try:
        objective = run_objective(record)
    except (KeyError, ValueError):      # settings of another version: the run is listed without a best
        objective = None
    standing = scoring.standing(candidates, objective) if objective is not None else None
    best = standing.best if standing is not None else None
    events, _ = read_events(run_dir / "events.jsonl")
    state = "finished" if events and events[-1].type == "run_finished" else (
        "failed" if events and events[-1].type == "run_failed" else "unfinished")
    return RunSummary(run_id=record["run_id"], path=run_dir, task=record.get("settings", {}).get("task", "?"),
                      started=record.get("started", ""), candidates=len(candidates), best=best, state=state,
                      objective=objective, standing=standing)


def list_runs(runs_dir: Path) -> list[RunSummary]:
    if not runs_dir.is_dir():
        return []
    return [summarize(p) for p in sorted(runs_dir.iterdir()) if (p / "run.json").is_file()]


# --- for the review page (archlab.ui): names from URLs, one read of a run, its live state ------------------
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")   # a run or candidate id: no path, no leading dot
# the events that start or end a session of the run; the last one says where the run stands
LIFECYCLE = ("run_started", "run_resumed", "run_stopped", "run_finished", "run_failed")


class ArtifactNotFound(LookupError):
    """A candidate file that does not exist, or a name that would reach outside the candidate's directory."""


def run_dir_named(runs_dir: Path, name: str) -> Path:
    """The directory `name` directly under `runs_dir`, whether or not its run.json is written yet.

    Only a bare name (no path, no prefix, no `..`, no symlink out of the runs directory): the
    review page takes names from URLs, and a URL must never reach outside `runs_dir`."""
    if not SAFE_NAME.fullmatch(name):
        raise RunNotFound(f"{name!r} is not a run id")
    root = Path(runs_dir).resolve()
    path = root / name
    if not path.is_dir() or path.resolve().parent != root:
        raise RunNotFound(f"no run {name!r} in {runs_dir}; `archlab runs` lists them")
    return path


def run_dir_names(runs_dir: Path) -> list[str]:
    """Every directory in `runs_dir` that can be a run (a bare name), newest first: with or without run.json yet."""
    if not Path(runs_dir).is_dir():
        return []
    return sorted((p.name for p in Path(runs_dir).iterdir() if p.is_dir() and SAFE_NAME.fullmatch(p.name)),
                  reverse=True)


@dataclass
class RunRecord:
    """Everything the page shows of a run, read once: run.json, the event log, the candidates, the reviews."""
    run_id: str
    path: Path
    record: dict                  # run.json; {} while it is being written
    events: list                  # agents.events.Event, the complete lines (a torn last line is left out)
    candidates: list              # agents.records.Candidate
    objective: Objective | None   # None while run.json is missing, or from a version this one cannot read
    waiting: list[ReviewWaiting]  # review requests without a decision event (archlab.reviews.waiting_requests)
    decided: dict[str, dict]      # candidate id -> the decision written for its waiting request, not yet taken up
    driven: bool                  # a live process drives the run (owner.pid)
    state: str                    # see run_state

    @property
    def settings(self) -> dict:
        return self.record.get("settings", {}) if isinstance(self.record.get("settings"), dict) else {}


def run_state(events: list, waiting: list[ReviewWaiting], driven: bool) -> str:
    """"starting" (nothing logged yet), "running", "waiting for review", "stopped", "finished" or "failed"."""
    last = next((e.type for e in reversed(events) if e.type in LIFECYCLE), None)
    if last == "run_finished":
        return "finished"
    if last == "run_failed":
        return "failed"
    if waiting:
        return "waiting for review"
    if driven:
        return "running"
    return "starting" if not events else "stopped"


def load_run(run_dir: Path) -> RunRecord:
    """The run as it stands on disk. A run.json not written yet (or half written) reads as {} and the
    run as "starting"; a torn last event line is left out. A directory deleted meanwhile raises
    FileNotFoundError; a log from a newer archlab, `EventSchemaError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} no longer exists")
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        record = {}
    record = record if isinstance(record, dict) else {}
    try:
        objective = run_objective(record) if record else None
    except (KeyError, ValueError):
        objective = None
    events, _ = read_events(run_dir / "events.jsonl")
    candidates = load_candidates(run_dir)
    waiting = waiting_requests(events)
    decided = {r.candidate_id: d for r in waiting if (d := read_decision(run_dir, r)) is not None}
    driven = owner_alive(run_dir)
    return RunRecord(run_id=run_dir.name, path=run_dir, record=record, events=events, candidates=candidates,
                     objective=objective, waiting=waiting, decided=decided, driven=driven,
                     state=run_state(events, waiting, driven) if record else "starting")


def run_version(run_dir: Path) -> str:
    """A cheap fingerprint that changes whenever anything the page shows may have: the log, run.json,
    the review decisions, the owner. FileNotFoundError once the directory is gone."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} no longer exists")
    parts = []
    for name in ("run.json", "events.jsonl", "reviews", "candidates"):
        try:
            stat = (run_dir / name).stat()
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except FileNotFoundError:
            parts.append("-")
    parts.append("driven" if owner_alive(run_dir) else "idle")
    return "/".join(parts)


def candidate_file(run_dir: Path, candidate_id: str, relative: str) -> Path:
    """A file in `<run>/candidates/<id>/` (`candidate.py`, `log.txt`, `jobs/<job>/...`); `ArtifactNotFound` for
    anything else, including a name or symlink that resolves outside that directory."""
    if not SAFE_NAME.fullmatch(candidate_id):
        raise ArtifactNotFound(f"{candidate_id!r} is not a candidate id")
    candidates = (Path(run_dir) / "candidates").resolve()
    base = (candidates / candidate_id).resolve()
    target = (base / relative).resolve()
    if base.parent != candidates or not target.is_relative_to(base) or not target.is_file():
        raise ArtifactNotFound(f"no file {relative!r} for candidate {candidate_id}")
    return target
