"""Installing the outside task package `tests/fixtures/archlab_csvtask` into the project's environment, for the tests.

`installed_csvtask()` pip-installs the package (non-editable: a copy in site-packages, which the
docker sandbox mounts with the environment, as it would a user's package) into the interpreter
running the tests, and uninstalls it when the last test process holding it is done. Test modules
on several pytest-xdist workers may hold it at once: each holder leaves a file named after its
process, under a lock, and the package is removed only when no live holder is left (a holder
that crashed does not keep it installed forever). It builds from a temporary copy, so no
`build/` or `.egg-info` is left in the repository, and the only copy of the table the package
installs is the one in site-packages.

What it does not do: protect other test sessions sharing the environment from seeing the task
`csvreg` while it is installed (it is an ordinary installed task then).
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "archlab_csvtask"
DIST = "archlab-csvtask"
_STATE = Path(tempfile.gettempdir()) / "archlab-csvtask-install"


@contextmanager
def _locked():
    _STATE.mkdir(exist_ok=True)
    with open(_STATE / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(holder: Path) -> bool:
    try:
        os.kill(int(holder.name.split("-")[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _installed_matches() -> bool:
    """Whether the installed package holds exactly the fixture's files (else a stale install is replaced)."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    for path in FIXTURE.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".csv") and "archlab_csvtask" in path.relative_to(FIXTURE).parts:
            copy = Path(dist.locate_file(path.relative_to(FIXTURE)))
            if not copy.is_file() or copy.read_bytes() != path.read_bytes():
                return False
    return True


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _install() -> None:
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail(f"installing the outside task package needs setuptools in {sys.prefix} (its build backend, "
                    "used without build isolation, so nothing is downloaded): pip install setuptools")
    with tempfile.TemporaryDirectory(prefix="archlab-csvtask-src-") as tmp:
        source = Path(tmp) / "archlab_csvtask"
        shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        _pip("install", "--no-build-isolation", "--no-deps", "--no-index", "--no-cache-dir", "--quiet", str(source))


@contextmanager
def installed_csvtask():
    """The package installed in this interpreter's environment for the duration of the block."""
    holder = _STATE / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with _locked():
        if not _installed_matches():
            _install()
        holder.touch()
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with _locked():
            holder.unlink(missing_ok=True)
            if not any(_alive(h) for h in _STATE.iterdir() if h.name != "lock"):
                for stale in _STATE.iterdir():
                    if stale.name != "lock":
                        stale.unlink(missing_ok=True)
                _pip("uninstall", "--yes", "--quiet", DIST)
        importlib.invalidate_caches()
