"""Helpers for the review page's tests: a real `archlab ui` server on loopback, and real runs that wait for review."""
from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.runs_support import ARCHLAB, ROOT, env, events, start, wait_for

REVIEW_ENV = {"ARCHLAB_REVIEW__POLL_SECONDS": "0.2", "PYTHONUNBUFFERED": "1"}


class Server:
    """`archlab ui --port 0 ...` in a subprocess; `url` is the one line it printed."""

    def __init__(self, runs_dir: Path, *flags: str, extra_env: dict | None = None, timeout: float = 60):
        self.proc = subprocess.Popen([*ARCHLAB, "ui", "--runs-dir", str(runs_dir), "--port", "0", *flags], cwd=ROOT,
                                     env=env(PYTHONUNBUFFERED="1", **(extra_env or {})), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline().strip()
            if self.proc.poll() is not None:
                break
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"archlab ui printed {line!r}; stderr: {self.proc.stderr.read()}")
        self.url = line
        parts = urlsplit(line)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = parts.hostname, parts.port
        self.token = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("token")

    def raw(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        """One request with the path sent exactly as given (no client-side `..` clean-up): (status, headers, text)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_review_run(runs_dir: Path, policy: str, *args: str, extra_env: dict | None = None):
    """A real `archlab run` with `review.policy = policy`; returns (process, run directory) once its log exists."""
    proc = start("run", "--runs-dir", str(runs_dir), *args,
                 extra_env={"ARCHLAB_REVIEW__POLICY": policy, **REVIEW_ENV, **(extra_env or {})})
    try:
        run_dir = wait_for(lambda: next((p for p in runs_dir.iterdir() if (p / "events.jsonl").exists()), None), 90)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"the run never started: {proc.communicate()[0][-3000:]}") from None
    return proc, run_dir


def waiting(run_dir: Path) -> list[str]:
    """Candidates whose review_waiting has no review_decision yet, from the log as written."""
    log = events(run_dir)
    decided = {(e["payload"]["candidate_id"], e["payload"]["fidelity"]) for e in log if e["type"] == "review_decision"}
    return [e["payload"]["candidate_id"] for e in log if e["type"] == "review_waiting"
            and (e["payload"]["candidate_id"], e["payload"]["fidelity"]) not in decided]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the review page has no CSRF field"
    return found.group(1)


def copy_run(run_dir: Path, name: str) -> Path:
    """A copy of a run directory beside it, as another run of the same runs directory (no owner)."""
    target = run_dir.parent / name

    def copy(source, destination):          # the run may replace or remove a file while it is copied
        try:
            shutil.copy2(source, destination)
        except FileNotFoundError:
            pass
    shutil.copytree(run_dir, target, copy_function=copy,
                    ignore=shutil.ignore_patterns("owner.pid", "jobs", "knowledge", "checkpoints*", "*.tmp"))
    return target


def payloads(run_dir: Path, kind: str) -> list[dict]:
    return [e["payload"] for e in events(run_dir) if e["type"] == kind]


def dumps(value) -> str:
    return json.dumps(value)
