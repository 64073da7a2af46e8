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
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from agents import scoring
from agents.events import read_events
from agents.recorder import load_candidates
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
    from archlab.settings import Settings, SettingsError, load_settings, read_config
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
    from agents.events import EventLog
    events = EventLog(run_dir / "events.jsonl")
    try:
        if events.repaired_bytes:
            events.emit("log_repaired", dropped_bytes=events.repaired_bytes)
        events.emit("settings_overridden", config=str(config), changed=changed)
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
    best: scoring.Score | None        # by the run's objective; random references are never the best of a run
    state: str
    objective: Objective | None = None   # None: run.json's settings cannot be read by this version


def run_objective(record: dict) -> Objective:
    """The objective a run is scored by, from the resolved settings in its run.json `record`.

    ValueError (or KeyError) when those settings cannot be read."""
    if "objective" in record:                       # resolved by create_run: no task registry, no torch
        return Objective.model_validate(record["objective"])
    from archlab.session import make_objective      # lazily: the CLI's reading commands should not pay for torch
    from archlab.settings import Settings
    return make_objective(Settings(**record["settings"]))


def summarize(run_dir: Path) -> RunSummary:
    record = json.loads((run_dir / "run.json").read_text())
    candidates = load_candidates(run_dir)
    try:
        objective = run_objective(record)
    except (KeyError, ValueError):      # settings of another version: the run is listed without a best
        objective = None
    best = scoring.best(candidates, objective) if objective is not None else None
    events, _ = read_events(run_dir / "events.jsonl")
    state = "finished" if events and events[-1].type == "run_finished" else (
        "failed" if events and events[-1].type == "run_failed" else "unfinished")
    return RunSummary(run_id=record["run_id"], path=run_dir, task=record.get("settings", {}).get("task", "?"),
                      started=record.get("started", ""), candidates=len(candidates), best=best, state=state,
                      objective=objective)


def list_runs(runs_dir: Path) -> list[RunSummary]:
    if not runs_dir.is_dir():
        return []
    return [summarize(p) for p in sorted(runs_dir.iterdir()) if (p / "run.json").is_file()]
