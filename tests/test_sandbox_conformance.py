"""One conformance suite for every sandbox backend: hostile candidates are contained and classified.

Each backend declares its capabilities; a case that needs one the backend lacks is skipped
with the reason (the process backend cannot hide the host filesystem, Docker can).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests import hostile_cases as cases


def _backends():
    params = [pytest.param("process", id="process")]
    params.append(pytest.param("docker", id="docker", marks=pytest.mark.docker))
    return params


@pytest.fixture(params=_backends())
def sandbox(request):
    if request.param == "process":
        from sandbox.process import ProcessSandbox
        return ProcessSandbox()
    from tests.docker_support import docker_sandbox_or_skip
    return docker_sandbox_or_skip()


def needs(sandbox, capability: str) -> None:
    if capability not in getattr(sandbox, "capabilities", frozenset()):
        pytest.skip(f"the {sandbox.name} backend does not provide {capability} here (declared)")


def leftovers(marker: str) -> list[int]:
    """Processes on this machine whose command line carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture
def marker():
    return f"archlab-hostile-{uuid.uuid4().hex[:10]}"


def test_well_behaved_candidate_is_ok(run_source, sandbox):
    result = run_source(cases.MODEL, sandbox=sandbox)
    assert result.status == "ok", result.message + result.log_tail


def test_fork_bomb_is_contained(run_source, sandbox, marker):
    needs(sandbox, "pid_limit")
    result = run_source(cases.FORK_BOMB.replace("MARKER", marker), sandbox=sandbox, wall_seconds=8, pids=64)
    assert result.status in ("timeout", "error", "killed", "oom")
    assert not leftovers(marker)


def test_memory_bomb_is_oom(run_source, sandbox):
    result = run_source(cases.MEMORY_BOMB, sandbox=sandbox, memory_mb=512, wall_seconds=30)
    assert result.status == "oom", (result.status, result.message, result.log_tail[-500:])
    assert "memory" in result.message


def test_infinite_loop_times_out(run_source, sandbox):
    result = run_source(cases.INFINITE_LOOP, sandbox=sandbox, wall_seconds=4)
    assert result.status == "timeout"
    assert "wall-clock limit" in result.message or "CPU" in result.message


def test_sleep_past_timeout_is_killed_on_time(run_source, sandbox):
    result = run_source(cases.SLEEP_PAST_TIMEOUT, sandbox=sandbox, wall_seconds=3)
    assert result.status == "timeout"
    assert result.timings["wall_seconds"] < 30


def test_writes_outside_the_output_directory_fail(run_source, sandbox, tmp_path, marker):
    needs(sandbox, "readonly_root")
    escape = tmp_path / f"escape-{marker}"
    result = run_source(cases.WRITE_OUTSIDE.replace("ESCAPE_PATH", str(escape)).replace("MARKER", marker),
                        sandbox=sandbox)
    assert result.status == "ok", result.message
    assert not escape.exists()
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or not path.read_bytes().startswith(b"pwned")
    assert "refused" in result.log_tail


def test_host_home_is_not_readable(run_source, sandbox, marker):
    needs(sandbox, "hidden_home")
    secret = Path.home() / f".archlab-secret-{marker}"
    secret.write_text(f"top-secret-{marker}")
    try:
        result = run_source(cases.READ_HOME.replace("SECRET_PATH", str(secret)), sandbox=sandbox)
    finally:
        secret.unlink()
    assert f"top-secret-{marker}" not in result.log_tail + result.message


def test_environment_secrets_do_not_reach_the_candidate(run_source, sandbox, monkeypatch, marker):
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-{marker}")
    monkeypatch.setenv("GITHUB_TOKEN", f"ghp-{marker}")
    result = run_source(cases.READ_ENV, sandbox=sandbox)
    assert result.status == "ok", result.message
    assert "environment:" in result.log_tail
    assert marker not in result.log_tail


def test_only_loopback_network_exists(run_source, sandbox):
    needs(sandbox, "no_network")
    result = run_source(cases.NETWORK, sandbox=sandbox)
    assert result.status == "ok", result.message
    line = next(l for l in result.log_tail.splitlines() if l.startswith("interfaces:"))
    assert line == "interfaces: ['lo']" or line == "interfaces: []"


def test_stdout_flood_is_bounded(run_source, sandbox):
    result = run_source(cases.FLOOD_STDOUT, sandbox=sandbox, wall_seconds=60)
    assert result.status == "ok", result.message
    assert len(result.log_tail) < 20_000
    assert "earlier bytes dropped" in result.log_tail


def test_background_process_does_not_outlive_the_job(run_source, sandbox, marker):
    result = run_source(cases.BACKGROUND.replace("MARKER", marker), sandbox=sandbox)
    assert result.status == "ok", result.message
    assert not leftovers(marker)


def test_filling_the_scratch_disk_is_stopped(run_source, sandbox):
    result = run_source(cases.FILL_DISK, sandbox=sandbox, file_size_mb=64)
    assert result.status == "error"
    assert "SIGXFSZ" in result.message or "No space" in result.message or "File too large" in result.message


def test_segfault_is_a_classified_error(run_source, sandbox):
    result = run_source(cases.SEGFAULT, sandbox=sandbox)
    assert result.status == "error"
    assert "SIGSEGV" in result.message


def test_forged_report_does_not_change_the_score(run_source, sandbox):
    result = run_source(cases.FORGED_REPORT, fidelity="short", sandbox=sandbox)
    assert result.status == "ok", result.message
    assert result.metrics["accuracy"] < 0.6          # an embedding-only model cannot recall
    assert result.metrics["params"] > 1000            # the runner's own count, not the forged 1.0
