"""A plain install works: the wheel carries every package and its data, and the installed `archlab` runs.

The wheel is built from a copy of the source tree (as `pip install .` would), installed with
`--no-deps` into a fresh virtual environment whose only link to this checkout is a `.pth`
line naming the project venv's site-packages (so torch and the other dependencies are not
downloaded again). Every command runs from an empty directory, so nothing is imported from
the source tree: `archlab` must come from the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "*.pyc")


def _run(*command, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, command))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, str]:
    """archlab's wheel, built the way `pip install .` builds it (from a clean copy of the tree), and what the build
    printed."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    proc = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source, cwd=work)
    (found,) = (work / "dist").glob("archlab-*.whl")
    return found, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def wheel(built) -> Path:
    return built[0]


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv holding the wheel; its dependencies come from the project venv through one .pth line."""
    work = tmp_path_factory.mktemp("installed")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=work)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(ARCHLAB_KNOWLEDGE__EMBEDDER="hashing", COLUMNS="200")
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=work, env=env)
    # only after the install, so pip never sees (or touches) the project venv's editable archlab
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work,
                     env=env).stdout.strip())
    project_site = Path(sysconfig.get_paths()["purelib"])
    (site / "archlab-test-dependencies.pth").write_text(f"{project_site}\n")
    _skip_if_the_sandbox_hides(project_site)
    cwd = work / "elsewhere"
    cwd.mkdir()
    return {"venv": venv, "python": python, "archlab": venv / "bin" / "archlab", "site": site, "cwd": cwd, "env": env}


def _skip_if_the_sandbox_hides(project_site: Path) -> None:
    """The process sandbox hides home directories from jobs; a project venv under one is out of the jobs' reach
    from the test venv (a real install has its dependencies in its own venv, which stays visible)."""
    from sandbox.process import ProcessSandbox
    homes = [Path.home(), Path("/root"), Path("/home")]
    if ProcessSandbox().confined and any(project_site.resolve().is_relative_to(h.resolve()) for h in homes):
        pytest.skip(f"the project venv ({project_site}) is under a home directory, which sandboxed jobs cannot see "
                    "here; clone the project outside your home directory to run this test")


def test_the_wheel_carries_every_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/**/__init__.py")
                if p.relative_to(ROOT).parts[0] in ("agents", "sandbox", "evaluators", "knowledge", "archlab", "wire")}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"packages left out of the wheel: {missing}"
    prompts = {p.name for p in (ROOT / "agents" / "prompts").iterdir() if p.is_file()}
    assert prompts and all(f"agents/prompts/{name}" in names for name in prompts)
    assert "knowledge/literature.json" in names
    assert {f"evaluators/baselines/{p.name}" for p in (ROOT / "evaluators" / "baselines").glob("*.py")} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "runs/")) for n in names)


def test_the_build_prints_no_setuptools_warnings(built):
    # `make run` and `make test` install the project first: pages of packaging warnings bury the run's first lines
    output = built[1]
    assert not any(word in output for word in ("BuildBackendWarning", "SetuptoolsDeprecationWarning",
                                               "SetuptoolsWarning")), output


def test_archlab_is_imported_from_the_installed_wheel(installed):
    out = _run(installed["python"], "-c", "import archlab, agents.nodes, wire.jobs; print(archlab.__file__)",
               cwd=installed["cwd"], env=installed["env"]).stdout.strip()
    assert Path(out).resolve().is_relative_to(installed["venv"].resolve()), out
    assert not Path(out).resolve().is_relative_to(ROOT)


def test_installed_archlab_evaluates_a_shipped_baseline(installed):
    baseline = installed["site"] / "evaluators" / "baselines" / "softmax_attention.py"
    out = _run(installed["archlab"], "eval", baseline, "--task", "mqar", "--fidelity", "check", cwd=installed["cwd"],
               env=installed["env"])
    result = json.loads(out.stdout)
    assert result["status"] == "ok", result
    assert result["metrics"]["params"] > 0


def test_installed_archlab_runs_one_round(installed):
    runs = installed["cwd"] / "runs"
    out = _run(installed["archlab"], "run", "--task", "mqar", "--rounds", "1", "--random-pool", "0",
               "--short-steps", "20", "--runs-dir", runs, cwd=installed["cwd"], env=installed["env"])
    (run_dir,) = [p for p in runs.iterdir() if (p / "run.json").is_file()]
    types = [json.loads(line)["type"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert types[-1] == "run_finished", out.stdout[-3000:]
    assert "plan" in types and "finding" in types            # the prompts/literature data and agents.nodes were there
    assert f"run written to {run_dir}" in out.stdout.replace("\n", "")
