"""CI cannot go green with what the tests need missing: `.ci/run`'s steps, the Docker setup, and docker tests under CI."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return {**env, "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", **extra}


def test_docker_setup_fails_under_ci_when_no_engine_starts(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "docker", "exit 1")          # `docker info`: no engine
    _stub(bin_dir, "dockerd", "echo 'failed to start daemon' >&2; exit 1")
    _stub(bin_dir, "id", 'echo 0')              # as root, so the script tries to start dockerd
    script = ["bash", str(ROOT / ".ci" / "docker-setup.sh")]
    log = {"ARCHLAB_DOCKERD_LOG": str(tmp_path / "dockerd.log")}
    under_ci = subprocess.run(script, env=_env(bin_dir, CI="true", **log), capture_output=True, text=True, timeout=60)
    assert under_ci.returncode == 1, under_ci.stdout + under_ci.stderr
    assert "dockerd exited at start" in under_ci.stderr and "failed to start daemon" in under_ci.stderr
    elsewhere = subprocess.run(script, env=_env(bin_dir, **log), capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 0 and "docker tests will skip" in elsewhere.stderr


def _ci_copy(tmp_path: Path, docker_rc: int = 0, llm_rc: int | None = 0) -> tuple[Path, Path, dict]:
    """`.ci/run` in a scratch tree whose setup scripts and `make` only log that they ran."""
    tree = tmp_path / "tree"
    (tree / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", tree / ".ci" / "run")
    calls = tmp_path / "calls.log"
    record = f'echo "$(basename "$0") $* CI=${{CI:-}}" >> {calls}'
    (tree / ".ci" / "docker-setup.sh").write_text(f"{record}\nexit {docker_rc}\n")
    (tree / ".ci" / "browser-setup.sh").write_text(f"{record}\nexit 0\n")
    (tree / ".ci" / "services-setup.sh").write_text(f"{record}\nexit 0\n")
    if llm_rc is not None:
        (tree / ".ci" / "llm-setup.sh").write_text(f"{record}\nexit {llm_rc}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "make", record)
    return tree, calls, _env(bin_dir)


def test_ci_run_installs_starts_docker_and_the_llm_server_then_tests_under_ci(tmp_path):
    tree, calls, env = _ci_copy(tmp_path)
    proc = subprocess.run(["bash", str(tree / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls.read_text().splitlines() == ["make install CI=true", "make docs CI=true", "docker-setup.sh  CI=true",
                                              "browser-setup.sh  CI=true",
                                              "services-setup.sh  CI=true", "llm-setup.sh  CI=true",
                                              "make test CI=true"]


def test_ci_run_stops_when_docker_or_the_llm_server_cannot_be_had(tmp_path):
    for broken in ("docker", "llm"):
        tree, calls, env = _ci_copy(tmp_path / broken, docker_rc=1 if broken == "docker" else 0,
                                    llm_rc=1 if broken == "llm" else 0)
        proc = subprocess.run(["bash", str(tree / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert "make test" not in calls.read_text()


def test_ci_run_goes_on_without_an_llm_setup_script(tmp_path):
    tree, calls, env = _ci_copy(tmp_path, llm_rc=None)
    proc = subprocess.run(["bash", str(tree / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls.read_text().splitlines()[-1] == "make test CI=true"


def test_docker_tests_fail_rather_than_skip_under_ci_without_an_engine(tmp_path):
    test = "tests/e2e/test_docker_backend.py::test_missing_prebuilt_image_is_a_clear_error"
    base = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    base.pop("CI", None)
    base.pop("ARCHLAB_REQUIRE_DOCKER", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test]
    elsewhere = subprocess.run(command, cwd=ROOT, env=base, capture_output=True, text=True, timeout=120)
    assert elsewhere.returncode == 0 and "1 skipped" in elsewhere.stdout, elsewhere.stdout
    under_ci = subprocess.run(command, cwd=ROOT, env={**base, "CI": "true"}, capture_output=True, text=True,
                              timeout=120)
    assert under_ci.returncode == 1 and "docker backend is unavailable" in under_ci.stdout, under_ci.stdout
