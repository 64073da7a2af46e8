"""kill -9 a real run at random moments; after `archlab resume` nothing is lost, nothing is done twice."""
from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from collections import Counter
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.runs_support import archlab, events, start, wait_for

KILL_SEEDS = range(10)     # ten random kill moments, in two runs of five kills each


def _check_log_is_valid(run_dir):
    raw = (run_dir / "events.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode().splitlines()
    parsed = [json.loads(line) for line in lines]                 # every line is whole JSON
    assert [e["seq"] for e in parsed] == list(range(len(parsed)))
    return parsed


def _kill_after(proc, seconds: float) -> tuple[int, bool]:
    """SIGKILL the run after `seconds`; returns its pid and whether the kill ended it (it may have finished)."""
    time.sleep(seconds)
    proc.kill()                                                   # SIGKILL: no cleanup runs
    returncode = proc.wait()
    proc.stdout.close()
    return proc.pid, returncode == -signal.SIGKILL


# (kill moments, checkpoint store): SQLite in the run directory, or Postgres (`checkpoints.url`, tests/conftest.py)
@pytest.mark.parametrize("group, store", [(0, "sqlite"), (1, "sqlite"), (1, "postgres")],
                         ids=["sqlite-0", "sqlite-1", "postgres-1"])
def test_kill_at_random_moments_then_resume(tmp_path, group, store, request):
    seeds = [s for s in KILL_SEEDS if s % 2 == group]
    run_env, resume_env, password = {}, {}, None
    if store == "postgres":
        url = request.getfixturevalue("postgres_url")
        password = urlsplit(url).password
        run_env = {"ARCHLAB_CHECKPOINTS__URL": url}     # the password in the URL: used, never written
        resume_env = {"PGPASSWORD": password}          # run.json keeps the URL without it; libpq reads this
    proc = start("run", "--rounds", "2", "--seed", str(group), "--runs-dir", str(tmp_path), extra_env=run_env)
    run_dir = wait_for(lambda: next((p for p in tmp_path.iterdir() if (p / "events.jsonl").exists()), None), 60)
    dead = []
    finished_early = False
    finished_before: set[str] = set()
    for seed in seeds:
        dead.append(_kill_after(proc, random.Random(seed).uniform(0.5, 7.0)))
        log = events(run_dir)
        finished_before |= {e["payload"]["job_id"] for e in log if e["type"] == "result"}
        if log and log[-1]["type"] == "run_finished":
            finished_early = True
            break
        proc = start("resume", run_dir.name, "--runs-dir", str(tmp_path), extra_env=resume_env)
    else:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        if password:
            assert password not in out
        dead.append((proc.pid, False))                   # ended by itself: it leaves no scratch behind

    log = _check_log_is_valid(run_dir)
    assert log[-1]["type"] == "run_finished"
    results = Counter(e["payload"]["job_id"] for e in log if e["type"] == "result")
    assert all(n == 1 for n in results.values()), results                  # no duplicated evaluation
    # a job killed in flight runs again; a job whose result was logged never starts again
    first_result = {}
    for e in log:
        if e["type"] == "result":
            first_result.setdefault(e["payload"]["job_id"], e["seq"])
    reran = {e["payload"]["job_id"] for e in log if e["type"] == "job_started"
             and e["payload"]["job_id"] in first_result and e["seq"] > first_result[e["payload"]["job_id"]]}
    assert not reran, f"finished jobs were run again: {reran}"
    assert finished_before <= set(first_result)
    on_disk = {p.parent.name for p in run_dir.glob("candidates/*/jobs/*/result.json")}
    assert on_disk == set(results)                                         # no lost evaluation
    for cid in ("b-softmax", "b-linear", "b-mlp", "c001", "c002"):
        record = json.loads((run_dir / "candidates" / cid / "candidate.json").read_text())
        assert record["status"] in ("baseline", "evaluated", "failed")
    assert not (run_dir / "owner.pid").exists()
    if store == "postgres":
        assert not (run_dir / "checkpoints.sqlite").exists()              # the graph's state went to Postgres
        for name in ("run.json", "events.jsonl"):
            assert password not in (run_dir / name).read_text()
        with psycopg.connect(url) as db:
            threads = {row[0] for row in db.execute("SELECT DISTINCT thread_id FROM checkpoints")}
        # the run's thread, and one per branch (`agents.scheduler.BranchPool`): nothing of another run
        assert run_dir.name in threads and all(t == run_dir.name or t.startswith(f"{run_dir.name}:c") for t in threads)
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(run_dir))]
    assert not leftovers
    # a killed run's scratch is swept by the resume after it; a run that ended by itself removed its own.
    # (a kill that lands after `run_finished`, during the exit, leaves it to the next start: nothing resumes)
    swept = [pid for i, (pid, killed) in enumerate(dead) if not killed or i + 1 < len(dead) or not finished_early]
    for pid in swept:
        assert not list(Path(tempfile.gettempdir()).glob(f"archlab-{pid}-*"))


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def test_stop_from_another_terminal_then_resume(tmp_path):
    # enough rounds that the run is still going when the stop lands (jobs start in milliseconds from the zygote)
    proc = start("run", "--rounds", "8", "--runs-dir", str(tmp_path))
    run_dir = wait_for(lambda: next((p for p in tmp_path.iterdir() if (p / "events.jsonl").exists()), None), 60)
    wait_for(lambda: any(e["type"] == "baseline" for e in events(run_dir)), 120)
    stopped = archlab("stop", run_dir.name, "--runs-dir", str(tmp_path))
    assert stopped.returncode == 0
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped" in out and f"archlab resume {run_dir.name}" in out
    assert events(run_dir)[-1]["type"] == "run_stopped"
    resumed = archlab("resume", run_dir.name, "--runs-dir", str(tmp_path), timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    log = events(run_dir)
    assert log[-1]["type"] == "run_finished"
    assert sum(e["type"] == "round_started" for e in log) == 8


def test_sigterm_stops_gracefully(tmp_path):
    proc = start("run", "--rounds", "3", "--runs-dir", str(tmp_path))
    run_dir = wait_for(lambda: next((p for p in tmp_path.iterdir() if (p / "events.jsonl").exists()), None), 60)
    wait_for(lambda: any(e["type"] == "job_started" for e in events(run_dir)), 60)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert events(run_dir)[-1]["type"] == "run_stopped"
