"""The host side of a warm worker's one handoff: its slot directory and its two channels.

A warm worker is started before its job exists, so the job's files cannot be mounted into
it the way the cold path mounts `jobdir`. Each worker instead gets a **slot**, made at spawn:

    <slots>/<random>/job/          read-only to the worker; the host copies job.json and inputs/ here
    <slots>/<random>/job/out/      the worker's only writable job directory; copied back to jobdir/out
    <slots>/<random>/home/         scratch: cwd, HOME and TMPDIR (process backend; docker uses a tmpfs)

`<slots>` (`archlab-<pid>-slots` in the temp directory) is owned by `nobody` with mode 0711 when
archlab runs as root, so a confined job (uid 0 without capabilities) can enter its own slot by
name but cannot list the directory to find its siblings'.

The protocol, over two byte channels (pipes for the process backend, FIFOs in the slot for docker):

    worker -> host   READY  "ready\\n"  imports done, waiting
    host -> worker   GO     "go\\n"     job.json and inputs/ are in the slot
    worker -> host   READY  "taken\\n"  job.json read, limits applied, candidate not yet imported;
                                        the worker then closes both channels

A worker that dies before "taken" (the host reads EOF, or its process is gone) never ran its
candidate: the host may run the job elsewhere (`WorkerLost`). So may a worker whose hidden
paths (`Limits.hidden_paths`) were created, replaced or moved after it started: it covered
them as they were, so it is discarded before "go" and a fresh one covers them as they are.
After "taken" the job is the worker's, and however it ends is classified like a cold job.
The runner side is `sandbox.runner --warm`.
"""
from __future__ import annotations

import atexit
import functools
import os
import select
import shutil
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

NOBODY = 65534
POLL_SLICE = 0.2          # seconds between liveness checks while waiting on a channel
TAKE_TIMEOUT = 30.0       # a worker that read "go" answers "taken" within milliseconds
READY_TIMEOUT = 120.0     # a fresh worker's imports (torch on a loaded machine is slow)
MAX_OUTPUT_FILES = 1000   # a job's out/ is copied back up to this many files


@functools.cache
def slots_root() -> Path:
    """The directory holding this process's slots, made once."""
    root = Path(tempfile.gettempdir()) / f"archlab-{os.getpid()}-slots"
    root.mkdir(mode=0o711, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(root, NOBODY, NOBODY)
    os.chmod(root, 0o711)
    remove_at_exit(root)
    return root


def remove_at_exit(folder: Path) -> None:
    """Remove `folder` when this process exits normally; a process forked from this one (the zygote, a
    job) inherits the handler but not the folder, so it leaves it alone. A process killed outright leaves
    it to the next start's sweep (`sandbox.process.sweep_leftovers`)."""
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)
    atexit.register(remove)


class Slot:
    """One worker's slot directory (see the module docstring)."""

    def __init__(self, world_writable_out: bool = False):
        self.root = slots_root() / uuid.uuid4().hex
        self.job = self.root / "job"
        self.inputs = self.job / "inputs"
        self.out = self.job / "out"
        self.home = self.root / "home"
        for path in (self.root, self.job, self.inputs, self.out, self.home):
            path.mkdir(mode=0o755)
            os.chmod(path, 0o755)
        if world_writable_out:
            os.chmod(self.out, 0o777)      # the container's non-root user writes here

    def place(self, jobdir: Path) -> None:
        """Copy the job's job.json and inputs/ (regular files only) into the slot, readable by the worker."""
        shutil.copyfile(jobdir / "job.json", self.job / "job.json")
        os.chmod(self.job / "job.json", 0o644)
        shutil.copytree(jobdir / "inputs", self.inputs, dirs_exist_ok=True, copy_function=shutil.copyfile)
        for path in self.inputs.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def collect(self, out: Path) -> None:
        """Copy what the job wrote into `out`: regular files only, never following a link, modes not kept."""
        out.mkdir(parents=True, exist_ok=True)
        _copy_tree(self.out, out, limit=MAX_OUTPUT_FILES)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _copy_tree(source: Path, target: Path, limit: int | None, depth: int = 0) -> int:
    """Copy regular files and directories a job wrote from `source` into `target`; links, FIFOs and devices
    are skipped, and so is what cannot be read."""
    copied = 0
    if depth > 8:
        return 0
    try:
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except OSError:
        return 0
    for entry in entries:
        if limit is not None and copied >= limit:
            break
        destination = target / entry.name
        try:
            kind = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(kind):
                destination.mkdir(mode=0o755, exist_ok=True)
                copied += _copy_tree(Path(entry.path), destination, None if limit is None else limit - copied,
                                     depth + 1)
            elif stat.S_ISREG(kind):
                _copy_file(entry.path, destination)
                copied += 1
        except OSError:          # vanished, or not readable: what the job left is its own problem
            continue
    return copied


def _copy_file(source: str, destination: Path) -> None:
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        with os.fdopen(fd, "rb", closefd=False) as reader, open(destination, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    finally:
        os.close(fd)
    os.chmod(destination, 0o644)


class Channel:
    """The host's two ends: `ready_fd` (read, from the worker) and `go_fd` (write, to it)."""

    def __init__(self, ready_fd: int, go_fd: int):
        self.ready_fd = ready_fd
        self.go_fd = go_fd
        self.buffer = b""
        self.eof = False
        self.ready = False
        self.taken = False
        self.lock = threading.Lock()        # a backend may watch for "ready" from its own thread (docker does)

    def _read(self, timeout: float) -> None:
        """Read what the worker sent within `timeout` seconds (0: only what is there now)."""
        with self.lock:
            self._read_locked(timeout)

    def _read_locked(self, timeout: float) -> None:
        if self.eof or self.ready_fd < 0:
            return
        poller = select.poll()
        poller.register(self.ready_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(max(0, int(timeout * 1000))):
            return
        try:
            data = os.read(self.ready_fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
        self.buffer += data
        self.ready = self.ready or b"ready\n" in self.buffer
        self.taken = self.taken or b"taken\n" in self.buffer

    def wait_for(self, flag: str, timeout: float, alive: Callable[[], bool]) -> bool:
        """Wait until the worker has said `flag` ("ready" or "taken"); False on EOF, death or timeout."""
        deadline = time.monotonic() + timeout
        while not getattr(self, flag):
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                return False
            self._read(min(POLL_SLICE, left))
            if not getattr(self, flag) and not self.eof and not alive():
                self._read(0)
                return getattr(self, flag)
        return True

    def send_go(self) -> bool:
        """Tell the worker its job is in the slot; False when it is gone (its read end closed)."""
        try:
            return os.write(self.go_fd, b"go\n") == 3
        except (BrokenPipeError, OSError):
            return False

    def close(self) -> None:
        with self.lock:                     # never under a reader's poll: the number could be reused
            for fd in (self.ready_fd, self.go_fd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self.ready_fd = self.go_fd = -1


def hand_over(worker, job, jobdir: Path) -> tuple[Path, float]:
    """The first half of every backend worker's `run`: refuse a second job or another profile, wait until the
    worker is ready, place the job in its slot, say "go" and wait for "taken". Returns the resolved job
    directory and when the job was handed over; `WorkerLost` (the worker discarded) if it dies before "taken".

    `worker` is a backend's worker: it has `limits`, `hidden_state` (`sandbox.base.hidden_state` at spawn), `slot`,
    `channel`, `id`, `_lock`, `_used`, `_discarded`, `_running()`, `wait_ready()`, `why_lost()` and `discard()`."""
    from sandbox.base import WorkerLost, check_fits, hidden_state
    check_fits(worker.limits, job)
    with worker._lock:
        if worker._used or worker._discarded:
            raise RuntimeError(f"worker {worker.id} was already used or discarded; a worker runs one job")
        worker._used = True
    if hidden_state(worker.limits.hidden_paths) != worker.hidden_state:
        worker.discard()         # it covered the hidden paths as they were at spawn: a fresh one covers them as now
        raise WorkerLost("a hidden path was created, replaced or moved after the worker started; the job goes to a "
                         "fresh worker that hides it as it is now")
    if not worker.wait_ready(READY_TIMEOUT):
        reason = f"the worker was not ready within {READY_TIMEOUT:g} s ({worker.why_lost()})"
        worker.discard()
        raise WorkerLost(reason)
    jobdir = Path(jobdir).resolve()
    worker.slot.place(jobdir)
    before_go = getattr(worker, "before_go", None)
    if before_go is not None:       # docker: the container's CPU weight is raised from its waiting level
        before_go()
    started = time.perf_counter()
    if not worker.channel.send_go() or not worker.channel.wait_for("taken", TAKE_TIMEOUT, worker._running):
        reason = f"the worker died before taking the job ({worker.why_lost()})"
        worker.discard()
        raise WorkerLost(reason)
    worker.channel.close()                       # the worker closed its ends too: nothing more is said
    return jobdir, started
