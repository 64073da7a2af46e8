"""The process backend's zygote: one trusted interpreter that has imported torch and forks every job's process.

Why: a fresh interpreter importing torch, numpy and the evaluators costs 2–3 CPU-seconds, paid
per job and, on a small machine, taken from the training of the job beside it. The zygote pays
it once; each job's process is a `fork()` of it (milliseconds).

The zygote (`python -m sandbox.zygote FD`, started by `Zygote.start`) holds only trusted state:
the runner's imports and their first-call caches (`sandbox.runner._preload` on a tiny trusted
model, CPU only). It never imports candidate code, never initialises CUDA (a forked child could
not use it), never sees held-out data (a job's inputs reach its slot after the fork), and runs
with a scrubbed environment and one thread (so a fork copies no half-held lock). It dies with
archlab (PR_SET_PDEATHSIG) and when its control socket closes.

Each fork request carries what the host decided for one worker (`ForkRequest`) and four
descriptors: the log pipe, the two handoff pipes of `sandbox.handoff`, and a status pipe on
which the zygote says `pid N` at once and `exit CODE` when it has reaped the child. Before it
touches anything of a job, the child:
1. starts its own session and process group, and asks for SIGKILL when the zygote dies
   (PR_SET_PDEATHSIG);
2. keeps only stdin (/dev/null), the log pipe as stdout and stderr, and the two handoff pipes:
   every other descriptor (the zygote's control socket, its other children's status pipes) is
   closed, so the job cannot talk to the zygote;
3. joins its job's cgroups (pids, memory, CPU quota, made by the host as for a cold job) and
   sets the cold path's rlimits (`ProcessSandbox._rlimits`);
4. takes the job's scrubbed environment (`ProcessSandbox._environment`), its scratch as cwd,
   and a fresh interpreter's random state (torch and numpy seeded from the OS);
5. where the machine allows it (the same probe the cold path uses): `unshare`s new network,
   PID and mount namespaces (and a user namespace when not root), then forks again so that the
   job's supervisor is PID 1 of its PID namespace, with /proc mounted for that namespace;
   there it applies `sandbox.confine` (read-only host, hidden homes and `hidden_paths`, private
   /dev, only `out/` and scratch writable), then drops every capability (bounding, inheritable,
   ambient, effective and permitted) and sets PR_SET_NO_NEW_PRIVS;
6. runs `sandbox.runner.warm` in-process: the job process waits for its one job on the
   handoff pipes, exactly as an exec'd warm worker does.
The intermediate process of step 5 stays outside the namespace, waits for PID 1 and exits with
its status (what `unshare --fork --kill-child` does on the cold path); PID 1 dies with it.

What it does not give beyond the cold path: nothing is added or removed — where namespaces are
missing the child gets what an unconfined cold job gets (session, rlimits, cgroups where they
can be made, scrubbed environment, scratch). The job shares the zygote's address-space layout
(ASLR is not re-randomised by fork): a leaked pointer of one job predicts the others'.
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Sequence

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
STATUS_FD = 5                  # in the intermediate child: its status pipe to the host (never in the job's namespace)
EXIT_SETUP_FAILED = 111        # as `sandbox.confine`: the child could not be isolated; nothing of the job ran
MESSAGE_BYTES = 1 << 20
START_TIMEOUT = 120.0          # the zygote's own imports, once (torch on a loaded machine is slow)


@dataclass
class ForkRequest:
    """Everything the host decided for one worker; the zygote applies it in the child, in this order."""

    env: dict[str, str]                    # the job's whole environment
    cwd: str                               # its scratch directory (cwd, HOME, TMPDIR)
    rlimits: list[tuple[int, int]]         # (resource, value), soft = hard
    cgroup_procs: list[str] = field(default_factory=list)   # cgroup.procs files to join
    namespaces: bool = False               # unshare net, pid and mount namespaces
    user_namespace: bool = False           # and a user namespace (not root)
    confine: str = ""                      # `sandbox.confine` spec (JSON); "" = not confined
    runner: list[str] = field(default_factory=list)  # `sandbox.runner.warm` arguments: slot, out, [--cuda]


# --- host side ----------------------------------------------------------------------------
class Child:
    """A worker forked by the zygote, seen from the host: the part of `subprocess.Popen` the backend uses.

    The zygote is its parent, so its exit status comes over the status pipe; EOF there without
    one means the zygote died, and with it (PR_SET_PDEATHSIG) the child."""

    def __init__(self, zygote: "Zygote", status_fd: int, log: IO[bytes]):
        self.zygote = zygote
        self.status_fd = status_fd
        self.stdout = log
        self.pid: int | None = None
        self.returncode: int | None = None
        self.final_at_exit = False      # set by the backend: its exit means every job process is gone (namespaces)
        self.cpu_seconds: float | None = None   # what the job's processes used, where the child could tell
        self._buffer = b""
        self._lock = threading.Lock()

    def _read(self, timeout: float) -> None:
        with self._lock:
            while self.returncode is None and self.status_fd >= 0:
                ready, _, _ = select.select([self.status_fd], [], [], max(0.0, timeout))
                if not ready:
                    return
                data = os.read(self.status_fd, 256)
                if not data:
                    self.returncode = -signal.SIGKILL if self.returncode is None else self.returncode
                    break
                self._buffer += data
                for line in self._buffer.split(b"\n")[:-1]:
                    word, _, value = line.decode().partition(" ")
                    if word == "pid":
                        self.pid = int(value)
                    elif word == "exit" and self.returncode is None:     # the intermediate's, then the zygote's
                        code, _, cpu = value.partition(" ")
                        self.returncode = int(code)
                        self.cpu_seconds = float(cpu) if cpu else None
                self._buffer = self._buffer.rsplit(b"\n", 1)[-1]
                timeout = 0
            if self.returncode is not None and self.status_fd >= 0:
                os.close(self.status_fd)
                self.status_fd = -1

    def wait_for_pid(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.pid is None and self.returncode is None and time.monotonic() < deadline:
            self._read(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.pid

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 0.5 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("zygote child", timeout or 0)
            self._read(min(0.5, left))
        return self.returncode  # type: ignore[return-value]

    def kill_group(self) -> None:
        """SIGKILL the child's process group; the zygote does it, since only the parent knows the pid is still its
        child (not reaped, so not reused)."""
        if self.poll() is None and self.wait_for_pid(5) is not None:
            self.zygote.send({"op": "kill", "pid": self.pid})


class ZygoteLost(RuntimeError):
    """The zygote is gone: no request reaches it."""


class Zygote:
    """The host's handle on one zygote process (see the module docstring)."""

    def __init__(self, python: str, env: dict[str, str]):
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket = host_end
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([python, "-m", "sandbox.zygote", str(zygote_end.fileno())], cwd="/", env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     pass_fds=(zygote_end.fileno(),), start_new_session=True,
                                     preexec_fn=die_with_parent)
        zygote_end.close()
        self.started = False
        from sandbox.base import TailBuffer
        self.log = TailBuffer()
        self.log.drain(self.proc.stderr)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc.poll() is None and self.socket.fileno() >= 0

    def wait_started(self, timeout: float) -> None:
        """Return once the zygote's imports are done (it says "started"); ZygoteLost if it dies or takes too long."""
        with self.lock:
            if self.started:
                return
            ready, _, _ = select.select([self.socket], [], [], timeout)
            message = self.socket.recv(64) if ready else b""
            if message != b"started":
                raise ZygoteLost(f"the zygote did not start within {timeout:g} s ({self.why()})")
            self.started = True

    def inherited_bytes(self) -> int:
        """The zygote's own anonymous memory, which every child starts with and shares: charged to the zygote, not
        to the child's memory group, yet resident in the child (its RssAnon, what a cold job's imports would cost)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def send(self, message: dict, fds: Sequence[int] = ()) -> None:
        """One request; ZygoteLost when the zygote is gone."""
        try:
            with self.lock:
                socket.send_fds(self.socket, [json.dumps(message).encode()], list(fds))
        except OSError as exc:
            raise ZygoteLost(f"the zygote is gone ({exc}); {self.why()}") from None

    def fork(self, request: ForkRequest, go_r: int, ready_w: int) -> Child:
        """Ask for one worker that waits on these handoff descriptors (the caller closes its copies)."""
        status_r, status_w = os.pipe()
        log_r, log_w = os.pipe()
        try:
            self.send({"op": "fork", "request": asdict(request)}, [log_w, go_r, ready_w, status_w])
        except ZygoteLost:
            os.close(status_r)
            os.close(log_r)
            raise
        finally:
            os.close(status_w)
            os.close(log_w)
        return Child(self, status_r, os.fdopen(log_r, "rb", buffering=0))

    def why(self) -> str:
        code = self.proc.poll()
        last = self.log.text().strip().splitlines()[-3:]
        return (f"zygote exit code {code}" if code is not None else "zygote running") + (
            f"; its log ends: {' | '.join(last)[-500:]}" if last else "")

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


_SHARED: dict[str, Zygote] = {}
_SHARED_LOCK = threading.Lock()


def shared(python: str, env: dict[str, str]) -> Zygote:
    """This process's zygote for `python`, started now if there is none or the last one died (its children died
    with it). Call it from a thread that lives as long as the process (PR_SET_PDEATHSIG follows the thread)."""
    with _SHARED_LOCK:
        zygote = _SHARED.get(python)
        if zygote is None or not zygote.alive():
            if zygote is not None:
                zygote.close()
            zygote = _SHARED[python] = Zygote(python, env)
        return zygote


def _close_shared() -> None:
    with _SHARED_LOCK:
        for zygote in _SHARED.values():
            zygote.close()
        _SHARED.clear()


atexit.register(_close_shared)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the thread that forked it ends (archlab, even SIGKILLed)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# --- zygote side ----------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def serve(sock: socket.socket) -> int:
    """The zygote's loop: fork a child per request, report each child's pid and exit, until the host is gone."""
    import torch

    from sandbox import runner
    runner._preload(False)
    if torch.cuda.is_initialized():       # a forked child could not use CUDA, and nothing here needs it
        raise RuntimeError("the zygote initialised CUDA; no child could use it")
    sock.send(b"started")
    children: dict[int, tuple[int, int]] = {}       # pidfd -> (pid, status write end)
    pids: set[int] = set()
    while True:
        readable, _, _ = select.select([sock.fileno(), *children], [], [])
        for pidfd in [fd for fd in readable if fd in children]:
            pid, status_w = children.pop(pidfd)
            _, status = os.waitpid(pid, 0)
            pids.discard(pid)
            _say(status_w, f"exit {os.waitstatus_to_exitcode(status)}\n")
            os.close(status_w)
            os.close(pidfd)
        if sock.fileno() not in readable:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 4)
        except ConnectionResetError:
            data, fds = b"", []
        if not data:
            return 0                       # the host closed the socket: archlab is done with us
        message = json.loads(data)
        if message["op"] == "kill":
            if message["pid"] in pids:     # still our unreaped child, so the number is still its
                for target in (os.killpg, os.kill):
                    try:
                        target(message["pid"], signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            continue
        log_w, go_r, ready_w, status_w = fds
        request = ForkRequest(**message["request"])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, log_w, go_r, ready_w, status_w)      # never returns
        for fd in (log_w, go_r, ready_w):
            os.close(fd)
        _say(status_w, f"pid {pid}\n")
        children[os.pidfd_open(pid)] = (pid, status_w)
        pids.add(pid)


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:          # the host stopped listening to this child: nothing to tell
        pass


def _child(request: ForkRequest, log_w: int, go_r: int, ready_w: int, status_w: int) -> None:
    """In the forked child: isolate (module docstring, steps 1–5), then run the warm runner. Never returns."""
    code = EXIT_SETUP_FAILED
    try:
        zygote = os.getppid()
        os.setsid()
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != zygote:
            os._exit(code)
        # out of the way first, so that placing one at 3 or 4 cannot overwrite another
        log, go, ready, status = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (log_w, go_r, ready_w, status_w))
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (log, 1), (log, 2), (go, 3), (ready, 4), (status, STATUS_FD)):
            os.dup2(source, target)
        os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])   # the zygote's socket, siblings'
        for path in request.cgroup_procs:
            Path(path).write_text(str(os.getpid()))
        for kind, value in request.rlimits:
            set_limit(kind, value)
        os.environ.clear()
        os.environ.update(request.env)
        os.chdir(request.cwd)
        sys.path[0] = request.cwd                   # where a cold `python -m` puts its working directory
        _fresh_random_state()
        if request.namespaces:
            code = _isolated(request)
        else:
            os.close(STATUS_FD)
            code = _run(request)
    except BaseException:  # noqa: BLE001 - the child reports everything through its log and exit code
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def set_limit(kind: int, value: int) -> None:
    """Set an rlimit (soft = hard); where the hard limit is lower already, to that."""
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY and value > hard:
            resource.setrlimit(kind, (hard, hard))


def _fresh_random_state() -> None:
    """What a fresh interpreter starts with: torch and numpy seeded from the OS, not the zygote's warm-up draws, and
    not the same for every child (Python's `random` reseeds itself after a fork)."""
    import numpy as np
    import torch
    torch.seed()
    np.random.seed()


def _isolated(request: ForkRequest) -> int:
    """New namespaces, then fork the job's PID 1 and wait for it (the intermediate stays outside)."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | (CLONE_NEWUSER if request.user_namespace else 0)
    _check(_libc.unshare(flags), "unshare")
    if request.user_namespace:          # map this user to root inside, as `unshare --map-root-user`
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = EXIT_SETUP_FAILED
        try:
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "prctl(PR_SET_PDEATHSIG)")
            code = _pid_one(request)
        except BaseException:  # noqa: BLE001 - reported through the log and the exit code
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _release_log()              # only PID 1 and the job hold the log pipe now: its end is the job's end
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    # PID 1 is reaped only once every process of its namespace is gone, so the job's files are final. PID 1 has said
    # so already, unless it was killed (the zygote says it a third time; the host keeps the first)
    _say(STATUS_FD, f"exit {code} {usage.ru_utime + usage.ru_stime:.3f}\n")   # and the CPU-seconds its tree used
    return code


def _release_log() -> None:
    """Point stdout and stderr at /dev/null, so that the host's reader of the log pipe sees its end without us."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _empty_namespace() -> None:
    """As PID 1 once the job process is reaped: kill and reap everything left in the namespace, so that nothing of
    the job runs or writes any more."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)         # every process of this namespace but PID 1
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _pid_one(request: ForkRequest) -> int:
    from sandbox import confine
    confine.mount(None, "/", None, confine.MS_REC | confine.MS_PRIVATE)
    confine.mount("proc", "/proc", "proc", confine.MS_NOSUID | confine.MS_NODEV | confine.MS_NOEXEC)
    if request.confine:
        try:
            confine.confine(json.loads(request.confine))
            os.chdir(os.getcwd())       # re-resolve the working directory through its new (writable) mount
        except (confine.ConfineError, OSError) as exc:
            print(f"archlab zygote: cannot confine the job: {exc}", file=sys.stderr)
            return EXIT_SETUP_FAILED
        drop_privileges()
    code = _run(request, private_fds=(STATUS_FD,))
    _empty_namespace()
    _release_log()
    # the job's files are final now: the host may read them while this process and its namespaces are torn down
    spent = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    _say(STATUS_FD, f"exit {code} {sum(u.ru_utime + u.ru_stime for u in spent):.3f}\n")
    return code


def drop_privileges() -> None:
    """Every capability gone (bounding set, ambient, inheritable, effective, permitted) and no new privileges:
    what `setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs` plus an exec give."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()                     # two {effective, permitted, inheritable}, all zero
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _run(request: ForkRequest, private_fds: tuple[int, ...] = ()) -> int:
    from sandbox import runner
    slot, out, *flags = request.runner
    return runner.warm(slot, out, "fd:3", "fd:4", cuda="--cuda" in flags, private_fds=private_fds)


def main(argv: list[str]) -> int:
    die_with_parent()
    sock = socket.socket(fileno=int(argv[0]))
    try:
        return serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
