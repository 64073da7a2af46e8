"""`make lint`'s import contracts (pyproject.toml, `lint-imports`): they hold on the tree, and a wrong-way import
or an import cycle between two modules of a package fails.

The packages are copied into a scratch directory that comes first on the path, one import the
contracts forbid is added there, and `lint-imports` is run on the copy with the project's own
configuration.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("archlab", "agents", "evaluators", "knowledge", "sandbox", "wire")
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def tree(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_layers_and_its_trust_boundary(tree):
    out = lint(tree)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("wire/jobs.py", "import agents.lab  # wrong way\n", "wire is not allowed to import agents"),
    ("agents/search.py", "from archlab import settings  # wrong way\n", "agents is not allowed to import archlab"),
    ("sandbox/runner.py", "import evaluators.heldout  # the secret, inside the sandbox\n",
     "the sandbox side imports nothing of the host side BROKEN"),
    ("sandbox/runner.py", "import evaluators.grading  # the host's grader, inside the sandbox\n",
     "the sandbox side imports nothing of the host side BROKEN"),
    ("evaluators/model_job.py", "import evaluators.heldout  # the secret, in the job\n",
     "the sandbox side imports nothing of the host side BROKEN"),
    # the cycle the run store once hid with an import inside a function
    ("archlab/resolved.py", "import archlab.runstore  # back again\n", "No cycles are allowed in archlab"),
    ("evaluators/fidelities.py", "import evaluators.model_job  # back again\n", "No cycles are allowed in evaluators"),
])
def test_a_wrong_way_import_or_a_cycle_fails_the_lint(tree, module, line, broken):
    path = tree / module
    path.write_text(path.read_text() + "\n" + line)
    out = lint(tree)
    assert out.returncode != 0
    assert broken in out.stdout, out.stdout
