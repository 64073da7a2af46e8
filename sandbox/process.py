"""The `process` backend: the runner in a child process with OS-level limits.

What it gives, wherever the OS allows:
- its own session and process group, killed as a whole at the wall-clock timeout;
- rlimits: address space (memory), CPU seconds, file size, open files, no core dumps, and
  processes (RLIMIT_NPROC; the kernel ignores it for root, so as root a pids cgroup is used
  when one can be created);
- a scrubbed environment (no API keys or tokens), its own scratch directory as cwd, HOME and
  TMPDIR, removed afterwards;
- new network and PID namespaces (`unshare`) when unprivileged user namespaces or root allow
  it: only a loopback interface exists, and every process the job starts, daemonised or not,
  dies with it.
- with mount namespaces (`sandbox.confine`): the host filesystem read-only except the job's
  output and scratch directories, home directories hidden behind a tmpfs (only the
  interpreter, the virtual environment and the project are brought back), a private
  /dev/shm, and every capability dropped.
What it does not give (use the `docker` backend for these): where namespaces are not
available, none of the above — the job then reads and writes what the invoking user can;
even confined, it can read the rest of the host filesystem (system files, the project and
its other runs); a memory limit across processes (RLIMIT_AS is per process); a CPU quota
(only CPU seconds).
"""
from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sandbox.base import TailBuffer, failure, read_report, result_from_report
from wire.jobs import EvalJob, EvalResult

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CGROUP_PIDS = Path("/sys/fs/cgroup/pids")
# environment variables a job may see; everything else (keys, tokens, proxies) is dropped
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


@functools.cache
def namespace_prefix() -> tuple[str, ...]:
    """The `unshare` command that gives a job no network and its own PID space, or () if unavailable."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    base = [unshare, "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    if os.geteuid() != 0:
        base[1:1] = ["--user", "--map-root-user"]
    try:
        probe = subprocess.run([*base, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(base) if probe.returncode == 0 else ()


def confine_spec(writable: list[Path]) -> str:
    """What `sandbox.confine` keeps writable, hides and brings back, as JSON for its command line."""
    homes = sorted({str(Path.home()), "/root", "/home"})
    keep = sorted({str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix).resolve()), str(PROJECT_ROOT),
                   str(Path(sys.executable).resolve().parent.parent)})
    return json.dumps({"writable": [str(p) for p in writable], "hide": homes, "keep": keep})


@functools.cache
def confinement_works() -> bool:
    """Whether jobs here can get a read-only host filesystem and hidden homes (tried once)."""
    prefix = namespace_prefix()
    if not prefix:
        return False
    scratch = Path(tempfile.mkdtemp(prefix="archlab-probe-"))
    try:
        probe = subprocess.run([*prefix, sys.executable, "-m", "sandbox.confine", confine_spec([scratch]), "--", "true"],
                               capture_output=True, timeout=30, cwd=scratch,
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PROJECT_ROOT)})
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return probe.returncode == 0


def process_capabilities() -> frozenset[str]:
    """What this machine lets the process backend enforce (the conformance suite reads this)."""
    found = set()
    if namespace_prefix():
        found |= {"no_network", "pid_namespace"}
    if confinement_works():
        found |= {"readonly_root", "hidden_home"}
    if os.geteuid() != 0 or (CGROUP_PIDS / "cgroup.procs").exists() or Path("/sys/fs/cgroup/cgroup.procs").exists():
        found.add("pid_limit")
    return frozenset(found)


class PidsCgroup:
    """A cgroup-v1/v2 pids group for one job: caps processes even for root, and kills them all at the end."""

    def __init__(self, job_id: str, max_pids: int):
        self.path: Path | None = None
        if os.geteuid() != 0:
            return
        root = CGROUP_PIDS if (CGROUP_PIDS / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
        if not (root / "cgroup.procs").exists():
            return
        path = root / f"archlab-{os.getpid()}-{job_id}-{uuid.uuid4().hex[:6]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            self._remove(path)
            return
        self.path = path

    def enter(self) -> None:
        """Called in the child before exec: the child and all its descendants join the group."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def kill_all(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        self._remove(self.path)
        self.path = None

    @staticmethod
    def _remove(path: Path) -> None:
        for _ in range(50):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def sweep_leftovers() -> int:
    """Remove the pids cgroups (killing what is in them) and scratch directories of archlab processes
    that died without cleaning up; returns how many were swept."""
    swept = 0
    for scratch in Path(tempfile.gettempdir()).glob("archlab-*-*"):
        owner = scratch.name.split("-")[1]
        if scratch.is_dir() and owner.isdigit() and not alive(int(owner)):
            shutil.rmtree(scratch, ignore_errors=True)
            swept += 1
    for root in (CGROUP_PIDS, Path("/sys/fs/cgroup")):
        if not root.is_dir() or not os.access(root, os.W_OK):
            continue
        for path in root.glob("archlab-*"):
            try:
                owner = int(path.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if alive(owner):
                continue
            group = PidsCgroup.__new__(PidsCgroup)
            group.path = path
            group.kill_all()
            swept += 1
    return swept


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child if archlab dies (even by SIGKILL), so no job outlives its run."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY and value > hard:
            resource.setrlimit(kind, (hard, hard))


class ProcessSandbox:
    """Runs each job as a limited child process of this one."""

    name = "process"

    def __init__(self, python: str | None = None):
        self.python = python or sys.executable
        self.capabilities = process_capabilities()
        self.confined = "readonly_root" in self.capabilities
        self.swept = sweep_leftovers()

    def _preexec(self, job: EvalJob, cgroup: PidsCgroup):
        limits = job.limits
        # the interpreter and torch map far more virtual memory than they touch
        address_space = (limits.memory_mb + 2048) * 1024 * 1024

        def setup() -> None:
            _die_with_parent()
            cgroup.enter()
            _limit(resource.RLIMIT_AS, address_space)
            _limit(resource.RLIMIT_CPU, int(limits.wall_seconds * max(1.0, limits.cpus)) + 5)
            _limit(resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024)
            _limit(resource.RLIMIT_NOFILE, 256)
            _limit(resource.RLIMIT_CORE, 0)
            _limit(resource.RLIMIT_NPROC, limits.pids)
        return setup

    def _environment(self, scratch: Path, job: EvalJob) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        threads = str(max(1, int(job.limits.cpus)))
        env.update(HOME=str(scratch), TMPDIR=str(scratch), PYTHONPATH=str(PROJECT_ROOT),
                   PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", OMP_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)
        if job.limits.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        jobdir = Path(jobdir).resolve()
        out = jobdir / "out"
        scratch = Path(tempfile.mkdtemp(prefix=f"archlab-{os.getpid()}-{job.job_id}-"))
        cgroup = PidsCgroup(job.job_id, job.limits.pids)
        runner = [self.python, "-m", "sandbox.runner", str(jobdir / "job.json"), str(jobdir / "inputs"), str(out)]
        if self.confined:
            command = [*namespace_prefix(), self.python, "-m", "sandbox.confine", confine_spec([out, scratch]), "--",
                       *runner]
        else:
            command = [*namespace_prefix(), *runner]
        tail = TailBuffer()
        started = time.perf_counter()
        timed_out = False
        try:
            proc = subprocess.Popen(command, cwd=scratch, env=self._environment(scratch, job),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=self._preexec(job, cgroup))
        except OSError as exc:
            cgroup.kill_all()
            shutil.rmtree(scratch, ignore_errors=True)
            return failure(job, "sandbox_error", f"could not start the sandbox process: {exc}")
        pump = tail.drain(proc.stdout)
        try:
            proc.wait(timeout=job.limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            cgroup.kill_all()
            proc.wait()
            pump.join(timeout=5)
            proc.stdout.close()
            shutil.rmtree(scratch, ignore_errors=True)
        wall = time.perf_counter() - started
        return classify(job, proc.returncode, timed_out, out, tail.text(), {"wall_seconds": wall})


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def classify(job: EvalJob, returncode: int | None, timed_out: bool, out: Path, log_tail: str,
             timings: dict[str, float]) -> EvalResult:
    """Turn how a process ended, plus what it wrote, into a classified result."""
    if timed_out:
        return failure(job, "timeout", f"the job ran past its wall-clock limit of {job.limits.wall_seconds:g} s "
                       "and was killed; look for an infinite loop, or make the model smaller or faster",
                       log_tail, timings)
    report, why = read_report(out)
    if report is not None and returncode == 0:
        return result_from_report(job, report, log_tail, timings)
    if returncode is not None and returncode < 0 or (returncode or 0) > 128:
        number = -returncode if returncode < 0 else returncode - 128
        return _signal_result(job, number, log_tail, timings)
    if "MemoryError" in log_tail or "can't allocate memory" in log_tail:
        return failure(job, "oom", f"the job ran out of memory (limit {job.limits.memory_mb} MB); use a smaller "
                       "model or chunk the computation", log_tail, timings)
    return failure(job, "error", f"the runner exited with code {returncode} and {why}; see the log tail",
                   log_tail, timings)


def _signal_result(job: EvalJob, number: int, log_tail: str, timings: dict[str, float]) -> EvalResult:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if name == "SIGXCPU":
        return failure(job, "timeout", f"the job used up its CPU-time limit (SIGXCPU); make it cheaper",
                       log_tail, timings)
    if name == "SIGXFSZ":
        return failure(job, "error", f"the job wrote a file over the {job.limits.file_size_mb} MB limit (SIGXFSZ)",
                       log_tail, timings)
    if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"):
        return failure(job, "error", f"the job crashed with {name} inside native code (ctypes, a C extension or "
                       "an out-of-bounds index in a kernel); remove the native call", log_tail, timings)
    if name == "SIGKILL" and ("MemoryError" in log_tail or "memory" in log_tail.lower()):
        return failure(job, "oom", "the job was killed while running out of memory", log_tail, timings)
    return failure(job, "killed", f"the job was killed by {name} from outside (not by archlab's limits)",
                   log_tail, timings)
