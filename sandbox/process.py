"""The `process` backend: the runner in a child process with OS-level limits.

What it gives, wherever the OS allows:
- its own session and process group, killed as a whole at the wall-clock timeout;
- rlimits: address space, CPU seconds, file size, open files, no core dumps, and processes
  (RLIMIT_NPROC; the kernel ignores it for root, so as root a pids cgroup is used);
- as root, a memory cgroup (`sandbox.cgroups`) holding the job's resident memory, all its
  processes together, to exactly `memory_mb`, swap off; an OOM kill in it is status `oom`
  (capability `memory_limit`). Where no memory cgroup can be made, only the address space of
  each process is limited (to `memory_mb` + 2048 MB, since the interpreter and torch map far
  more than they touch; capability `address_space_only`). With the cgroup, that address-space
  limit stays as a per-process backstop, except for GPU jobs (CUDA maps more than any such
  limit allows);
- as root and confined, a CPU cgroup quota of `Limits.cpus` (capability `cpu_quota`): all the
  job's threads and processes together get at most `cpus` CPU-seconds per wall second, so a
  candidate that starts more threads than it was given gains nothing (`OMP_NUM_THREADS` and
  the runner's `torch.set_num_threads` only request the same count). Unconfined, a root job
  could write itself out of its group, so no quota is claimed there;
- a scrubbed environment (no API keys or tokens), its own scratch directory as cwd, HOME and
  TMPDIR, removed afterwards;
- new network and PID namespaces (`unshare`) when unprivileged user namespaces or root allow
  it: only a loopback interface exists, every process the job starts, daemonised or not, dies
  with it, and no process outside is visible or can be signalled;
- with mount namespaces (`sandbox.confine`): the host filesystem read-only except the job's
  output and scratch directories, home directories hidden behind a tmpfs (only the
  interpreter, the virtual environment and the project are brought back), the job's
  `Limits.hidden_paths` covered (a tmpfs over a directory, an empty read-only file over a
  file; capability `hidden_paths`), a private /dev (no disks) with a private /dev/shm, and
  every capability dropped. A hidden path that contains what the job needs to run (the
  interpreter, the project, the job's directory) is refused as `sandbox_error`, and so is any
  hidden path where the machine cannot confine jobs;
- PR_SET_PDEATHSIG: the job dies with archlab, even when archlab is SIGKILLed.

How a job's interpreter starts (`ProcessSandbox(start=...)`, setting `sandbox.start`):
- `fork` (the default): forked from this backend's zygote (`sandbox.zygote`), one trusted
  process per archlab process that has imported torch, numpy and the evaluators once and holds
  nothing else (no candidate code, no CUDA context, no held-out data, a scrubbed environment).
  The child enters everything listed above itself, in-process and before the job's files reach
  it: session, PDEATHSIG, cgroups, rlimits, environment, the namespaces (`unshare`, then a
  second fork so that its supervisor is PID 1 with its own /proc), `sandbox.confine`'s
  confinement and the capability drop with no-new-privileges; then it waits for its one job as
  a warm worker does. It costs a fork (milliseconds), not an import (2–3 CPU-seconds). The
  zygote's own memory, shared copy-on-write and charged to the zygote, is counted against the
  job's memory group, so a job has the same `memory_mb` to itself as an exec'd one. A cold
  `run` is a worker forked for the job and given it at once. A zygote that dies takes its
  waiting children with it; the next worker starts a fresh zygote (`WorkerLost` for a job
  that was waiting, which `WarmSandbox` reruns on a fresh worker, never twice).
- `exec`: a fresh interpreter per job (`python -m sandbox.runner`, or `--warm` for a worker),
  inside `unshare` and `python -m sandbox.confine` / `setpriv`.
Both give exactly the isolation above; capabilities do not depend on the start.

Warm workers (`spawn`, used by `sandbox.warm.WarmSandbox`) get every one of these, set up at
spawn time exactly as for a cold job of the same limits (the limits profile includes the
CPUs and the hidden paths): each is a fresh `unshare`d, confined, rlimited, cgrouped process
tree, forked from the zygote (or, with `exec`, an interpreter that imports the runner's
dependencies), that waits for one job on a pipe (`sandbox.handoff`, `sandbox.runner.warm`).
Its job's files are copied into its slot (read-only inside its mount namespace); only the slot's `out/` and scratch are writable, and
`out/` is copied back to `jobdir/out` (regular files only) after the whole tree is dead. The
one job-specific limit, CPU seconds (it depends on the wall clock), is lowered by the trusted
runner before the candidate is imported; the wall clock is enforced here from the handoff. A
worker whose hidden paths were created, replaced or moved after it started is not given the
job (`hand_over`). Workers are forked by one long-lived thread, since the kernel sends
PDEATHSIG when the *thread* that forked a child exits.

What it does not give (use the `docker` backend for these): where namespaces are not
available, none of the isolation above — the job then reads and writes what the invoking
user can, can see and signal other processes, has no CPU quota and no hidden paths; even
confined, it can read the rest of the host filesystem (system files, the project and its
other runs) except the homes and the hidden paths, and a hidden file's contents under another
name (a hard link, a second mount of its filesystem). No CPU affinity is set (a job can widen
its own mask; the quota is the limit). On the fork path every job starts from the zygote's
address-space layout (a fork does not re-randomise it): a pointer one job learns predicts
where libraries sit in the others.
"""
from __future__ import annotations

import functools
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Literal, Sequence

from sandbox import cgroups, zygote
from sandbox.base import (TailBuffer, WorkerLost, failure, hidden_conflict, hidden_state, interpreter_paths,
                          read_report, result_from_report)
from sandbox.handoff import Channel, Slot, hand_over
from sandbox.zygote import set_limit as _limit
from wire.jobs import EvalJob, EvalResult, Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WARM_CPU_SECONDS = 7 * 24 * 3600   # a waiting worker's CPU-seconds ceiling; the runner lowers it to the job's
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


def runtime_paths() -> list[Path]:
    """What a confined job brings back from under the hidden homes: the interpreter, the venv, the project."""
    return sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PROJECT_ROOT,
                   Path(sys.executable).resolve().parent.parent})


def confine_spec(writable: list[Path], hidden: Sequence[str] = ()) -> str:
    """What `sandbox.confine` keeps writable, hides and brings back, as JSON for its command line."""
    homes = sorted({str(Path.home()), "/root", "/home"})
    return json.dumps({"writable": [str(p) for p in writable], "hide": homes,
                       "keep": [str(p) for p in runtime_paths()], "hidden": list(hidden)})


def hidden_paths_problem(limits: Limits, job_paths: Sequence[Path]) -> str:
    """Why `limits.hidden_paths` cannot be hidden from a job of this backend (see `sandbox.base.hidden_conflict`)."""
    return hidden_conflict(limits.hidden_paths, [*runtime_paths(), *interpreter_paths(), *job_paths])


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
        found |= {"readonly_root", "hidden_home", "hidden_paths"}
        if cgroups.cpu_cgroup_works():       # confined, the job cannot write the cgroup files to leave its group
            found.add("cpu_quota")
    if os.geteuid() != 0 or cgroups.pids_cgroup_works():
        found.add("pid_limit")
    found.add("memory_limit" if cgroups.memory_cgroup_works() else "address_space_only")
    return frozenset(found)


def sweep_leftovers() -> int:
    """Remove the cgroups (killing what is in them), scratch and slot directories of archlab processes
    that died without cleaning up; returns how many were swept."""
    swept = 0
    for scratch in Path(tempfile.gettempdir()).glob("archlab-*-*"):
        owner = scratch.name.split("-")[1]
        if scratch.is_dir() and owner.isdigit() and not alive(int(owner)):
            shutil.rmtree(scratch, ignore_errors=True)
            swept += 1
    return swept + cgroups.sweep(alive)


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_die_with_parent = zygote.die_with_parent    # SIGKILL the child if archlab dies (even by SIGKILL)
Start = Literal["fork", "exec"]


class ProcessSandbox:
    """Runs each job as a limited child process of this one (cold), or hands it to a warm worker (`spawn`).

    `start`: how a job's interpreter starts — "fork" from this backend's zygote (`sandbox.zygote`: torch
    already imported, milliseconds), or "exec" a fresh one (2–3 CPU-seconds of imports per job)."""

    name = "process"

    def __init__(self, python: str | None = None, start: Start = "fork"):
        self.python = python or sys.executable
        self.start: Start = start
        self.capabilities = process_capabilities()
        self.confined = "readonly_root" in self.capabilities
        self.swept = sweep_leftovers()

    def _command(self, runner: list[str], writable: list[Path], hidden: Sequence[str] = ()) -> list[str]:
        if self.confined:
            return [*namespace_prefix(), self.python, "-m", "sandbox.confine", confine_spec(writable, hidden), "--",
                    *runner]
        return [*namespace_prefix(), *runner]

    def _cgroup(self, name: str, limits: Limits) -> cgroups.JobCgroup:
        # a CPU quota only where it holds: unconfined, a root job could write itself out of its group
        return cgroups.JobCgroup(name, limits.pids, limits.memory_mb,
                                 limits.cpus if "cpu_quota" in self.capabilities else None)

    def _refusal(self, limits: Limits, job_paths: Sequence[Path]) -> str:
        """Why a job with these limits cannot run here at all ("" if it can)."""
        if limits.hidden_paths and "hidden_paths" not in self.capabilities:
            return ("the job's limits hide host paths, but this machine cannot confine process jobs (no mount "
                    "namespaces), so they would stay readable; run with `--sandbox docker` (sandbox.backend = "
                    "'docker'), or as root or with unprivileged user namespaces enabled")
        return hidden_paths_problem(limits, job_paths)

    @staticmethod
    def _rlimits(limits: Limits, cgroup: cgroups.JobCgroup, cpu_seconds: int) -> list[tuple[int, int]]:
        """Every job's rlimits, exec'd or forked, in the order they are set."""
        # the interpreter and torch map far more virtual memory than they touch; CUDA maps more than any
        # such limit allows, so a GPU job whose memory cgroup holds its real memory gets none
        address_space = (limits.memory_mb + 2048) * 1024 * 1024
        found = [(resource.RLIMIT_AS, address_space)] if cgroup.memory is None or limits.gpus == 0 else []
        return found + [(resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_FSIZE, limits.file_size_mb * 1024 * 1024),
                        (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, limits.pids)]

    def _preexec(self, limits: Limits, cgroup: cgroups.JobCgroup, cpu_seconds: int) -> Callable[[], None]:
        rlimits = self._rlimits(limits, cgroup, cpu_seconds)

        def setup() -> None:
            _die_with_parent()
            cgroup.enter()
            for kind, value in rlimits:
                _limit(kind, value)
        return setup

    def _fork_request(self, limits: Limits, cgroup: cgroups.JobCgroup, scratch: Path, writable: list[Path],
                      env: dict[str, str], runner: list[str]) -> zygote.ForkRequest:
        """What a worker forked from the zygote is given: exactly what `_command` and `_preexec` give an exec'd one."""
        namespaces = bool(namespace_prefix())
        return zygote.ForkRequest(
            env=env, cwd=str(scratch), rlimits=self._rlimits(limits, cgroup, WARM_CPU_SECONDS),
            cgroup_procs=[str(path / "cgroup.procs") for path in cgroup.paths], namespaces=namespaces,
            user_namespace=namespaces and os.geteuid() != 0,
            confine=confine_spec(writable, limits.hidden_paths) if self.confined else "", runner=runner)

    def zygote_env(self) -> dict[str, str]:
        """The zygote's own environment: the scrubbed base every job's starts from, with one thread (it forks)."""
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        return env

    def _environment(self, scratch: Path, limits: Limits, devices: Sequence[str] | None = None) -> dict[str, str]:
        """The job's whole environment; `devices` None: the cold rule (the host's GPUs, or none for gpus = 0)."""
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        threads = str(max(1, int(limits.cpus)))
        env.update(HOME=str(scratch), TMPDIR=str(scratch), PYTHONPATH=str(PROJECT_ROOT),
                   PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", OMP_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)
        if devices is not None:
            env.pop("NVIDIA_VISIBLE_DEVICES", None)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        elif limits.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        if self.start == "fork":
            return self._run_forked(job, jobdir)
        jobdir = Path(jobdir).resolve()
        out = jobdir / "out"
        scratch = Path(tempfile.mkdtemp(prefix=f"archlab-{os.getpid()}-{job.job_id}-"))
        refusal = self._refusal(job.limits, [jobdir, scratch])
        if refusal:
            shutil.rmtree(scratch, ignore_errors=True)
            return failure(job, "sandbox_error", refusal)
        cgroup = self._cgroup(job.job_id, job.limits)
        runner = [self.python, "-m", "sandbox.runner", str(jobdir / "job.json"), str(jobdir / "inputs"), str(out)]
        command = self._command(runner, [out, scratch], job.limits.hidden_paths)
        cpu_seconds = int(job.limits.wall_seconds * max(1.0, job.limits.cpus)) + 5
        tail = TailBuffer()
        started = time.perf_counter()
        timed_out = False
        try:
            proc = subprocess.Popen(command, cwd=scratch, env=self._environment(scratch, job.limits),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=self._preexec(job.limits, cgroup, cpu_seconds))
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
            oom_kills = _end(proc, cgroup, pump)
            shutil.rmtree(scratch, ignore_errors=True)
        wall = time.perf_counter() - started
        return classify(job, proc.returncode, timed_out, out, tail.text(), {"wall_seconds": wall},
                        oom_killed=oom_kills > 0)

    def _run_forked(self, job: EvalJob, jobdir: Path) -> EvalResult:
        """A cold job on the fork path: a worker forked for it now, given the job as soon as it is ready. A worker
        lost before it took the job (its zygote died) is replaced once; the job never runs twice."""
        reason = ""
        for _ in range(2):
            worker = ProcessWorker(self, job.limits, () if job.limits.gpus == 0 else None)
            if worker.refused:
                worker.discard()
                return failure(job, "sandbox_error", worker.refused)
            try:
                return worker.run(job, jobdir)
            except WorkerLost as exc:
                worker.discard()
                reason = str(exc)
        return failure(job, "sandbox_error", f"the forked sandbox process did not start: {reason}")

    def spawn(self, limits: Limits, devices: Sequence[str] = ()) -> "ProcessWorker":
        """A warm worker for jobs of this profile, starting now; returns at once (see `ProcessWorker`)."""
        return ProcessWorker(self, limits, devices)


def _end(proc: "subprocess.Popen | zygote.Child", cgroup: cgroups.JobCgroup, pump: threading.Thread | None) -> int:
    """Kill the job's whole tree, reap it, and return the OOM kills its memory group saw."""
    if isinstance(proc, zygote.Child) and proc.final_at_exit and proc.poll() is not None:
        # PID 1 of its namespace is reaped, so every job process is gone: its groups are emptied and removed
        # off the job's clock (only the trusted intermediate may still be exiting in them)
        oom_kills = cgroup.oom_kills()
        _in_background(cgroup.kill_all)
        if pump is not None:
            pump.join(timeout=5)
        return oom_kills
    if isinstance(proc, zygote.Child):
        proc.kill_group()          # the zygote is its parent: only it knows the pid is still the child's
    else:
        _kill_group(proc.pid)
    oom_kills = cgroup.oom_kills()
    cgroup.kill_all()
    proc.wait()
    if pump is not None:
        pump.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return oom_kills


class _Launcher:
    """The one long-lived thread that forks every warm worker of this process.

    PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, so a worker forked by a
    short-lived thread (a replacement started from an executor's job thread) would be killed
    with it; this thread lives as long as the process does."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="archlab-worker-launcher", daemon=True)
                self.thread.start()
        self.tasks.put(task)

    def _loop(self) -> None:
        while True:
            self.tasks.get()()


_LAUNCHER = _Launcher()


class ProcessWorker:
    """One warm, one-shot worker of the process backend (the `sandbox.base.Worker` protocol).

    Started for a limits profile: rlimits, cgroups (pids and memory), namespaces, confinement
    and environment are set at spawn exactly as `ProcessSandbox.run` sets them for a job of
    those limits; its slot's `out/` and scratch are its only writable directories. With
    `start="fork"` its process is forked from the zygote (`sandbox.zygote`), which applies the
    same settings in the child; with "exec" it is a fresh `python -m sandbox.runner --warm`.
    `devices` None: the cold rule (the host's GPUs for a GPU job, none otherwise)."""

    name = "process"

    def __init__(self, sandbox: ProcessSandbox, limits: Limits, devices: Sequence[str] | None = ()):
        self.limits = limits
        self.devices = tuple(devices or ())
        self.sandbox = sandbox
        self.id = f"w{uuid.uuid4().hex[:10]}"
        self.slot = Slot()
        self.hidden_state = hidden_state(limits.hidden_paths)     # before confinement covers them: see hand_over
        self.cgroup = sandbox._cgroup(self.id, limits)
        go_read, go_write = os.pipe()
        ready_read, ready_write = os.pipe()
        self.channel = Channel(ready_read, go_write)
        self.tail = TailBuffer()
        self.proc: subprocess.Popen | zygote.Child | None = None
        self.pump: threading.Thread | None = None
        self.launch_error = ""
        self._launched = threading.Event()
        self._lock = threading.Lock()
        self._discarded = False
        self._used = False
        self._ended = False
        cuda = ["--cuda"] if limits.gpus and (devices is None or self.devices) else []
        writable = [self.slot.out, self.slot.home]
        env = sandbox._environment(self.slot.home, limits, None if devices is None else self.devices)
        refusal = sandbox._refusal(limits, [self.slot.root])
        self.refused = refusal          # the backend cannot run jobs of these limits at all (WarmSandbox says so)
        if refusal:                     # never started: wait_ready says no, and why_lost says why
            self.launch_error = refusal
            for fd in (go_read, ready_write):
                os.close(fd)
            self._launched.set()
            return
        if sandbox.start == "fork":
            request = sandbox._fork_request(limits, self.cgroup, self.slot.home, writable, env,
                                            [str(self.slot.job), str(self.slot.out), *cuda])
            _LAUNCHER.submit(lambda: self._fork(request, (go_read, ready_write)))
            return
        runner = [sandbox.python, "-m", "sandbox.runner", "--warm", str(self.slot.job), str(self.slot.out),
                  f"fd:{go_read}", f"fd:{ready_write}", *cuda]
        command = sandbox._command(runner, writable, limits.hidden_paths)
        preexec = sandbox._preexec(limits, self.cgroup, WARM_CPU_SECONDS)
        _LAUNCHER.submit(lambda: self._launch(command, env, preexec, (go_read, ready_write)))

    def _fork(self, request: zygote.ForkRequest, child_fds: tuple[int, int]) -> None:
        """On the launcher thread (the zygote, when it starts, must die with this process): ask the zygote."""
        try:
            with self._lock:
                if self._discarded:
                    return
                try:
                    parent = zygote.shared(self.sandbox.python, self.sandbox.zygote_env())
                    parent.wait_started(zygote.START_TIMEOUT)
                    # the child shares the zygote's memory, charged to the zygote: its own group holds the rest, so
                    # that all it has resident stays within memory_mb, as for a cold job whose imports count too
                    self.cgroup.lower_memory(self.limits.memory_mb * 1024 * 1024 - parent.inherited_bytes())
                    self.proc = parent.fork(request, *child_fds)
                    self.proc.final_at_exit = request.namespaces
                except zygote.ZygoteLost as exc:
                    self.launch_error = str(exc)
                    return
                self.pump = self.tail.drain(self.proc.stdout)
        finally:
            self._launch_ended(child_fds)

    def _launch_ended(self, child_fds: tuple[int, ...]) -> None:
        """However a launch went: the child's ends of its pipes closed here, and waiters told it is over."""
        for fd in child_fds:
            os.close(fd)
        self._launched.set()

    def _launch(self, command: list[str], env: dict[str, str], preexec, child_fds: tuple[int, int]) -> None:
        try:
            with self._lock:
                if self._discarded:
                    return
                try:
                    self.proc = subprocess.Popen(command, cwd=self.slot.home, env=env, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 start_new_session=True, preexec_fn=preexec, pass_fds=child_fds)
                except OSError as exc:
                    self.launch_error = f"could not start the sandbox process: {exc}"
                    return
                self.pump = self.tail.drain(self.proc.stdout)
        finally:
            self._launch_ended(child_fds)

    # --- the Worker protocol -----------------------------------------------------------
    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._launched.wait(timeout) or self.proc is None:
            return False
        ready = self.channel.wait_for("ready", max(0.0, deadline - time.monotonic()), self._running)
        return ready and self.alive()              # ready once, and not dead since

    def alive(self) -> bool:
        if not self._launched.is_set():
            return not self._discarded
        if not self._running():
            return False
        self.channel._read(0)
        return not self.channel.eof

    def _running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._discarded

    def why_lost(self) -> str:
        if self.launch_error:
            return self.launch_error
        code = None if self.proc is None else self.proc.poll()
        last = self.tail.text().strip().splitlines()[-3:]
        origin = f" ({self.proc.zygote.why()})" if isinstance(self.proc, zygote.Child) else ""
        return (f"exit code {code}{origin}" if code is not None else "still running") + (
            f"; its log ends: {' | '.join(last)[-500:]}" if last else "")

    def run(self, job: EvalJob, jobdir: Path, on_taken: Callable[[], None] | None = None) -> EvalResult:
        """Run `job` on this worker (once); WorkerLost if it dies, or never gets ready, before taking it."""
        jobdir, started = hand_over(self, job, jobdir)
        timed_out = False
        try:
            if on_taken is not None:
                on_taken()
            self.proc.wait(timeout=max(0.0, job.limits.wall_seconds - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            oom_kills = self._end()
            self.channel.close()
            self.slot.collect(jobdir / "out")       # the whole tree is dead: nothing changes under the copy
            _in_background(self.slot.remove)
        timings = {"wall_seconds": time.perf_counter() - started}
        cpu = self.proc.cpu_seconds if isinstance(self.proc, zygote.Child) else None
        if cpu is not None:                          # forked in namespaces: the CPU time its whole tree used
            timings["cpu_seconds"] = cpu
        return classify(job, self.proc.returncode, timed_out, jobdir / "out", self.tail.text(), timings,
                        oom_killed=oom_kills > 0)

    def _end(self) -> int:
        """Kill and reap the tree once; the OOM kills its memory group saw."""
        with self._lock:
            proc, self._ended = (None if self._ended else self.proc), True
        return 0 if proc is None else _end(proc, self.cgroup, self.pump)

    def discard(self) -> None:
        """Kill the worker's whole tree and remove its slot and cgroups (idempotent)."""
        with self._lock:
            self._discarded = True
        self._launched.wait(60)                    # a launch under way finishes (or sees the flag) first
        self._end()
        self.cgroup.kill_all()
        self.channel.close()
        self.slot.remove()

    def host_pids(self) -> list[int]:
        """The worker's processes as the host numbers them (for tests and diagnostics)."""
        if isinstance(self.proc, zygote.Child):
            pid = self.proc.wait_for_pid(5) if self.proc.poll() is None else None
            return [] if pid is None else descendants(pid)
        return [] if self.proc is None else descendants(self.proc.pid)


def descendants(root: int) -> list[int]:
    """`root` and every process below it, by host pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _in_background(cleanup: Callable[[], None]) -> None:
    """Clean-up that no result depends on, off the job's clock."""
    threading.Thread(target=cleanup, name="archlab-cleanup", daemon=True).start()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def classify(job: EvalJob, returncode: int | None, timed_out: bool, out: Path, log_tail: str,
             timings: dict[str, float], oom_killed: bool = False) -> EvalResult:
    """Turn how a process ended, plus what it wrote, into a classified result.

    `oom_killed`: the kernel's OOM killer fired in the job's memory cgroup (its configured limit)."""
    if timed_out:
        return failure(job, "timeout", f"the job ran past its wall-clock limit of {job.limits.wall_seconds:g} s "
                       "and was killed; look for an infinite loop, or make the model smaller or faster",
                       log_tail, timings)
    report, why = read_report(out)
    if report is not None and returncode == 0:
        return result_from_report(job, report, log_tail, timings)
    if oom_killed:
        return failure(job, "oom", f"the job was killed by the kernel for using more than its {job.limits.memory_mb} "
                       "MB memory limit; use a smaller model or chunk the computation", log_tail, timings)
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
        return failure(job, "timeout", "the job used up its CPU-time limit (SIGXCPU); make it cheaper",
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
