"""Helpers for tests that drive the real `archlab` CLI in subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHLAB = [sys.executable, "-m", "archlab.cli"]
TINY_TASK = {"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 20, "full_steps": 30}
# no proxy rung unless a test is about it: it adds a sandbox job per candidate
TINY_ENV = {"ARCHLAB_TASK_OPTIONS": json.dumps(TINY_TASK), "ARCHLAB_KNOWLEDGE__EMBEDDER": "hashing",
            "ARCHLAB_SANDBOX__CPUS": "1", "ARCHLAB_LOOP__PROXY_RUNG": "false", "COLUMNS": "200",
            "ARCHLAB_EXECUTOR__WORKERS": "2"}   # two jobs at once, two candidates per round, on any machine


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, **TINY_ENV, **extra}


def archlab(*args: str, extra_env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*ARCHLAB, *args], capture_output=True, text=True, cwd=ROOT, env=env(**(extra_env or {})),
                          timeout=timeout)


def start(*args: str, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*ARCHLAB, *args], cwd=ROOT, env=env(**(extra_env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(predicate, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def only_run(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if (p / "run.json").is_file()]
    assert len(dirs) == 1, dirs
    return dirs[0]
