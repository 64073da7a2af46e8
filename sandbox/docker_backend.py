"""The `docker` backend: each job in its own container, through the Docker Engine's SDK.

Every container gets: no network (`network_mode="none"`); a read-only root filesystem; a
size-capped tmpfs at /tmp (the working directory) and /dev/shm; the job's inputs mounted
read-only and its `out/` as the one writable mount; a memory limit with no swap beyond it;
a CPU quota of `Limits.cpus` (`nano_cpus`, the kernel's CFS quota: all the container's
threads together get at most `cpus` CPU-seconds per wall second; capability `cpu_quota`);
a pid limit; file-size, open-file and core ulimits; all capabilities dropped and
`no-new-privileges`; a non-root user; an environment with nothing from the host in it; a
wall-clock timeout (enforced here, and by `timeout` inside the container should archlab
die); bounded logs. Containers carry `archlab.*` labels and are always removed: after each
job (try/finally), at exit (atexit), on a SIGTERM nobody else handles, and — for an archlab
that was SIGKILLed — by the sweep of dead owners' leftovers at the next `connect()`. GPUs
are requested through device requests and handed out by a `GpuAllocator` so that
concurrent jobs never share one.

Hidden paths. Host paths outside the mounted trees (the interpreter, the venv, the runner's
packages, the system's /usr and /lib, the job's files) do not exist inside at all; each of
`Limits.hidden_paths` that a mounted tree holds is covered there — an empty read-only tmpfs
over a directory, an empty read-only file over a file (`hidden_mounts`; capability
`hidden_paths`). A hidden path that holds a mounted tree (something the job needs to run) is
refused as `sandbox_error`.

No cpuset is set: pinning would need a core allocator so that concurrent jobs do not share
cores while others idle, and the quota already bounds what extra threads buy.

An engine that disappears mid-job, or an image removed after `connect()`, is a
`sandbox_error` result saying what to do, never an exception. The memory limit is the job's
own `memory_mb` (capability `memory_limit`); an OOM kill is status `oom`.

Warm workers (`spawn`, `DockerWorker`, used by `sandbox.warm.WarmSandbox`) are containers
created with exactly these options for their limits profile (CPUs and hidden paths
included), started before their job is known: the runner imports torch and the evaluators,
then waits on a FIFO in its slot (`sandbox.handoff`). A worker whose hidden paths were
created, replaced or moved after it started is not given the job (`hand_over`). The slot
replaces the job directory: `/job` (job.json, inputs/, the FIFOs) read-only, `/job/out` the
one writable mount, copied back to `jobdir/out` (regular files only) once the container is
gone. The wall clock is enforced here from the handoff, and inside by the runner's
supervisor (PID 1, out of the job's reach) in place of `timeout`, whose limit is not known
at spawn. GPUs are the `devices` the worker was spawned with, as a device request. Each
container takes one job and is removed after it, like a cold one (from another thread, off
the job's clock: it has exited, so nothing in it runs or writes). While it starts (torch and
the evaluators, 2–3 CPU-seconds) a worker's container has the least CPU weight
(`cpu_shares` 2), so on a busy machine its start-up takes only what running jobs leave; once
it says "ready", or as soon as a job waits for it, its weight is raised to every job's (1024). Its
CPU quota (`nano_cpus`) is the job's from the start. The same effect as the process
backend's zygote by other means: containers are the isolation boundary, and one container
never serves two jobs, so the start-up cannot be forked from a shared one; it can only be
kept out of the running jobs' way.

What it does not give: protection from kernel exploits (containers share the host
kernel), or from a Docker Engine that is itself misconfigured; a hidden file's contents under
another name inside a mounted tree (a hard link).
"""
from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

from sandbox.base import SandboxUnavailable, TailBuffer, failure, hidden_conflict, hidden_state, interpreter_paths
from sandbox.gpu import GpuAllocator, NotEnoughGpus
from sandbox.handoff import Channel, Slot, hand_over, remove_at_exit
from sandbox.images import IN_CONTAINER_ROOT, ImagePlan, ensure_image, image_plan
from sandbox.process import alive, classify, descendants
from wire.jobs import EvalJob, EvalResult, Limits

LABEL = "archlab.job"
SCRATCH_MB = 256          # /tmp tmpfs per job
USER = "65534:65534"      # nobody
GRACE_SECONDS = 5         # the in-container `timeout` fires this long after archlab's own
WAITING_CPU_SHARES = 2    # a warm container's CPU weight while it imports: the kernel's least, so it yields to jobs
RUNNING_CPU_SHARES = 1024  # every job's weight (Docker's default), set when the worker is ready
ENGINE_ERRORS = (docker.errors.APIError, requests.exceptions.RequestException)
_SANDBOXES: weakref.WeakSet = weakref.WeakSet()   # for the SIGTERM safety net


class DockerSandbox:
    name = "docker"
    capabilities = frozenset({"pid_limit", "no_network", "pid_namespace", "readonly_root", "hidden_home",
                              "memory_limit", "cpu_quota", "hidden_paths"})

    def __init__(self, client, plan: ImagePlan, gpus: GpuAllocator | None = None):
        self.client = client
        self.plan = plan
        self.gpus = gpus or GpuAllocator()
        self.host = socket.gethostname()
        self._live: set[str] = set()
        self._lock = threading.Lock()
        atexit.register(self.remove_all)
        _SANDBOXES.add(self)

    @classmethod
    def connect(cls, image: str | None = None, gpus: GpuAllocator | None = None) -> "DockerSandbox":
        """A sandbox on a reachable engine with its image ready; SandboxUnavailable says what to fix otherwise."""
        try:
            client = docker.from_env(timeout=30)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxUnavailable(f"cannot reach the Docker Engine ({exc}); start dockerd (`sudo dockerd &` or "
                                     "`sudo systemctl start docker`) or set DOCKER_HOST") from None
        plan = image_plan(image)
        try:
            ensure_image(client, plan)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(f"the image {plan.tag} does not exist; build it with "
                                     f"`docker build -f sandbox/Dockerfile -t {plan.tag} .`") from None
        except docker.errors.APIError as exc:
            raise SandboxUnavailable(f"could not prepare the sandbox image {plan.tag}: {exc}") from None
        sandbox = cls(client, plan, gpus)
        sandbox.sweep()
        _remove_containers_on_sigterm()
        return sandbox

    # --- housekeeping ------------------------------------------------------------------
    def sweep(self) -> int:
        """Remove containers left by archlab processes on this host that no longer run."""
        swept = 0
        for container in self.client.containers.list(all=True, filters={"label": LABEL}):
            labels = container.labels
            if labels.get("archlab.host") != self.host:
                continue
            owner = int(labels.get("archlab.owner_pid", "0") or 0)
            if owner and alive(owner):
                continue
            _remove(container)
            swept += 1
        return swept

    def remove_all(self) -> None:
        """Remove every container this object started and has not removed yet (interrupts, exit)."""
        with self._lock:
            live, self._live = set(self._live), set()
        for cid in live:
            try:
                _remove(self.client.containers.get(cid))
            except ENGINE_ERRORS:    # gone already, or the engine is: the next sweep removes it
                pass

    # --- one job -----------------------------------------------------------------------
    def _environment(self, limits: Limits) -> dict[str, str]:
        threads = str(max(1, int(limits.cpus)))
        return {"PYTHONPATH": IN_CONTAINER_ROOT, "HOME": "/tmp", "TMPDIR": "/tmp", "PATH": "/usr/bin:/bin",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads, "LANG": "C.UTF-8"}

    def _options(self, limits: Limits, command: list[str], mounts: list[Mount], labels: dict[str, str],
                 devices: Sequence[str]) -> dict:
        """Everything a job's container gets, cold or warm (see the module docstring)."""
        memory = f"{limits.memory_mb}m"
        file_size = limits.file_size_mb * 1024 * 1024
        options = dict(
            command=command, detach=True, user=USER, working_dir="/tmp", environment=self._environment(limits),
            network_mode="none", read_only=True, mounts=mounts + self._plan_mounts(),
            tmpfs={"/tmp": f"size={SCRATCH_MB}m,mode=1777"}, shm_size="64m",
            mem_limit=memory, memswap_limit=memory, nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], ipc_mode="private",
            ulimits=[Ulimit(name="fsize", soft=file_size, hard=file_size), Ulimit(name="nofile", soft=256, hard=256),
                     Ulimit(name="core", soft=0, hard=0)],
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            labels={**labels, "archlab.owner_pid": str(os.getpid()), "archlab.host": self.host},
        )
        if devices:
            options["device_requests"] = [DeviceRequest(device_ids=list(devices), capabilities=[["gpu"]])]
        options["mounts"] += hidden_mounts(limits.hidden_paths, options["mounts"])
        return options

    def _plan_mounts(self) -> list[Mount]:
        return [Mount(target, source, type="bind", read_only=True) for source, target in self.plan.mounts.items()]

    def _refusal(self, limits: Limits, job_paths: list[Path]) -> str:
        """Why a job with these limits cannot run here at all ("" if it can): a hidden path holding what it needs."""
        return hidden_conflict(limits.hidden_paths, [*map(Path, self.plan.mounts), *interpreter_paths(), *job_paths])

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        jobdir = Path(jobdir).resolve()
        out = jobdir / "out"
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o777)                      # the container's non-root user writes here
        try:
            with self.gpus.acquire(job.limits.gpus) as devices:
                return self._run(job, jobdir, out, devices)
        except NotEnoughGpus as exc:
            return failure(job, "sandbox_error", str(exc))

    def _run(self, job: EvalJob, jobdir: Path, out: Path, devices: list[str]) -> EvalResult:
        limits = job.limits
        refusal = self._refusal(limits, [jobdir])
        if refusal:
            return failure(job, "sandbox_error", refusal)
        command = ["/usr/bin/timeout", "-s", "KILL", str(int(limits.wall_seconds) + GRACE_SECONDS),
                   self.plan.python, "-m", "sandbox.runner", "/job/job.json", "/job/inputs", "/job/out"]
        if not self.plan.offline:
            command = command[4:]
        mounts = [Mount("/job/job.json", str(jobdir / "job.json"), type="bind", read_only=True),
                  Mount("/job/inputs", str(jobdir / "inputs"), type="bind", read_only=True),
                  Mount("/job/out", str(jobdir / "out"), type="bind", read_only=False)]
        labels = {LABEL: job.job_id, "archlab.run": job.run_id}
        started = time.perf_counter()
        container, problem = self._start(self._options(limits, command, mounts, labels, devices), bool(devices))
        if container is None:
            return failure(job, "sandbox_error", problem)
        tail = TailBuffer()
        pump = threading.Thread(target=_pump_logs, args=(container, tail), daemon=True)
        pump.start()
        ended = self._wait(container, pump, limits.wall_seconds)
        return self._classify(job, ended, out, tail, {"wall_seconds": time.perf_counter() - started})

    def _start(self, options: dict, with_gpus: bool):
        """(the started container, "") or (None, what went wrong, worded for the result)."""
        container = None
        try:
            container = self.client.containers.create(self.plan.tag, **options)
            with self._lock:
                self._live.add(container.id)
            container.start()
        except docker.errors.ImageNotFound:
            if container is not None:
                self._discard(container)
            return None, (f"the sandbox image {self.plan.tag} is gone (removed after archlab started); restart "
                          "archlab to re-create the offline image, or rebuild it with "
                          f"`docker build -f sandbox/Dockerfile -t {self.plan.tag} .`")
        except docker.errors.APIError as exc:
            if container is not None:
                self._discard(container)
            hint = (" — GPUs need the NVIDIA container toolkit (nvidia-container-toolkit) configured as a Docker "
                    "runtime" if with_gpus else "")
            return None, f"the container did not start: {exc.explanation or exc}{hint}"
        except requests.exceptions.RequestException as exc:   # after APIError, which is one too: no connection
            if container is not None:
                self._discard(container)
            return None, (f"cannot reach the Docker Engine ({exc}); check `docker info`, start dockerd, then re-run "
                          "the job")
        return container, ""

    def _wait(self, container, pump: threading.Thread, wall_seconds: float, remove_later: bool = False) -> "Ended":
        """Wait for the container (at most `wall_seconds`), read how it ended, and remove it (`remove_later`: from
        another thread, off the job's clock; it has exited, so nothing of it runs or writes any more)."""
        ended = Ended()
        try:
            try:
                state = container.wait(timeout=max(0.001, wall_seconds))
                ended.returncode = int(state.get("StatusCode", -1))
            except requests.exceptions.RequestException as exc:
                if not _read_timed_out(exc):     # the SDK reports its read timeout as a ConnectionError
                    raise
                ended.timed_out = True
                _kill(container)
            pump.join(timeout=10)
            if not ended.timed_out:
                container.reload()
                ended.oom = bool(container.attrs["State"].get("OOMKilled"))
        except ENGINE_ERRORS as exc:
            ended.lost = f"{type(exc).__name__}: {exc}"
        finally:
            if remove_later and not ended.lost:
                threading.Thread(target=self._discard, args=(container,), name="archlab-remove", daemon=True).start()
            else:
                self._discard(container)
        return ended

    def _classify(self, job: EvalJob, ended: "Ended", out: Path, tail: TailBuffer,
                  timings: dict[str, float]) -> EvalResult:
        limits = job.limits
        if ended.lost:
            return failure(job, "sandbox_error", f"lost the Docker Engine during the job ({ended.lost[:300]}); check "
                           "`docker info`, start dockerd if it stopped, then re-run the job", tail.text(), timings)
        if ended.oom:
            return failure(job, "oom", f"the container was killed by the kernel for using more than its "
                           f"{limits.memory_mb} MB memory limit; use a smaller model or chunk the computation",
                           tail.text(), timings)
        if ended.returncode == 137 and not ended.timed_out and timings["wall_seconds"] >= limits.wall_seconds:
            return failure(job, "timeout", "the job ran past its wall-clock limit (killed inside the container)",
                           tail.text(), timings)
        result = classify(job, ended.returncode, ended.timed_out, out, tail.text(), timings)
        return _docker_wording(result)

    def _discard(self, container) -> None:
        _remove(container)
        with self._lock:
            self._live.discard(container.id)

    def spawn(self, limits: Limits, devices: Sequence[str] = ()) -> "DockerWorker":
        """A warm worker (a container, see `DockerWorker`) for jobs of this profile; returns at once."""
        return DockerWorker(self, limits, devices)


@dataclass
class Ended:
    """How a job's container ended."""

    returncode: int | None = None
    timed_out: bool = False
    oom: bool = False
    lost: str = ""     # the engine failed us: what it said


class DockerWorker:
    """One warm, one-shot worker of the docker backend (the `sandbox.base.Worker` protocol).

    A container started with the same options a cold job of these limits gets (`_options`);
    instead of the job's directory it mounts its slot: `/job` read-only (job.json, inputs/ and
    the two FIFOs of the handoff) and `/job/out` writable. No job-specific setting is needed
    inside: the wall clock is enforced here from the handoff and by the in-container supervisor
    (`sandbox.runner --warm`, PID 1), which kills the job if archlab is gone. If archlab dies
    while the worker waits, the worker reads EOF on its FIFO and exits; the sweep at the next
    `connect()` removes the container."""

    name = "docker"

    def __init__(self, sandbox: DockerSandbox, limits: Limits, devices: Sequence[str] = ()):
        self.sandbox = sandbox
        self.limits = limits
        self.devices = tuple(devices)
        self.id = f"warm-{uuid.uuid4().hex[:10]}"
        self.slot = Slot(world_writable_out=True)
        self.hidden_state = hidden_state(limits.hidden_paths)     # before the mounts cover them: see hand_over
        for fifo in ("go", "ready"):
            os.mkfifo(self.slot.job / fifo)
            os.chmod(self.slot.job / fifo, 0o666)
        # the host holds the read end of `ready` and a read-write end of `go` (so the worker's open never
        # blocks and it reads EOF when archlab is gone)
        self.channel = Channel(os.open(self.slot.job / "ready", os.O_RDONLY | os.O_NONBLOCK),
                               os.open(self.slot.job / "go", os.O_RDWR | os.O_NONBLOCK))
        self.tail = TailBuffer()
        self.container = None
        self.pump: threading.Thread | None = None
        self.launch_error = ""
        self._launched = threading.Event()
        self._lock = threading.Lock()
        self._discarded = False
        self._used = False
        command = [sandbox.plan.python, "-m", "sandbox.runner", "--warm", "/job", "/job/out", "/job/go", "/job/ready",
                   *(["--cuda"] if limits.gpus and self.devices else [])]
        mounts = [Mount("/job", str(self.slot.job), type="bind", read_only=True),
                  Mount("/job/out", str(self.slot.out), type="bind", read_only=False)]
        labels = {LABEL: self.id, "archlab.run": "", "archlab.worker": "warm"}
        options = sandbox._options(limits, command, mounts, labels, self.devices)
        # its start-up (torch, the evaluators: 2-3 CPU-seconds) runs at the least CPU weight, so on a busy machine it
        # takes only what running jobs leave; at "ready" it is raised to every job's weight (see `_watch`)
        options["cpu_shares"] = WAITING_CPU_SHARES
        self._weighted = threading.Event()
        refusal = sandbox._refusal(limits, [self.slot.root])
        self.refused = refusal          # the backend cannot run jobs of these limits at all (WarmSandbox says so)
        if refusal:                     # never started: wait_ready says no, and why_lost says why
            self.launch_error = refusal
            self._launched.set()
            return
        threading.Thread(target=self._launch, args=(options,), name=f"archlab-{self.id}", daemon=True).start()

    def _launch(self, options: dict) -> None:
        try:
            container, problem = self.sandbox._start(options, bool(self.devices))
            with self._lock:
                self.container, self.launch_error = container, problem
                discarded = self._discarded
            if container is not None:
                if discarded:
                    self.sandbox._discard(container)
                    return
                self.pump = threading.Thread(target=_pump_logs, args=(container, self.tail), daemon=True)
                self.pump.start()
        finally:
            self._launched.set()
        if self.container is not None:
            self._watch()

    def _watch(self) -> None:
        """Raise the container's CPU weight to a running job's once it says "ready" (off any job's clock)."""
        from sandbox.handoff import READY_TIMEOUT
        if self.channel.wait_for("ready", READY_TIMEOUT, self._running):
            self._raise_weight()

    def _raise_weight(self) -> None:
        if self._weighted.is_set():
            return
        try:
            self.container.update(cpu_shares=RUNNING_CPU_SHARES)
        except ENGINE_ERRORS:       # gone already: the handoff finds it dead
            pass
        self._weighted.set()

    def before_go(self) -> None:
        """Called by the handoff before "go": the job never runs at the waiting weight."""
        if not self._weighted.wait(5):
            self._raise_weight()

    # --- the Worker protocol -----------------------------------------------------------
    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._launched.wait(timeout) or self.container is None:
            return False
        if not self.channel.ready:      # someone waits for it now (a job): its start-up is no longer background work
            self._raise_weight()
        ready = self.channel.wait_for("ready", max(0.0, deadline - time.monotonic()), self._running)
        return ready and self.alive()              # ready once, and not dead since

    def _running(self) -> bool:
        if self.container is None or self._discarded:
            return False
        try:
            self.container.reload()
        except ENGINE_ERRORS:
            return False
        return self.container.status in ("created", "running")

    def alive(self) -> bool:
        if not self._launched.is_set():
            return not self._discarded
        self.channel._read(0)
        return not self.channel.eof and self._running()

    def why_lost(self) -> str:
        if self.launch_error:
            return self.launch_error
        last = self.tail.text().strip().splitlines()[-3:]
        state = self.container.status if self.container is not None else "not started"
        return f"container {state}" + (f"; its log ends: {' | '.join(last)[-500:]}" if last else "")

    def run(self, job: EvalJob, jobdir: Path, on_taken: Callable[[], None] | None = None) -> EvalResult:
        """Run `job` on this worker (once); WorkerLost if it dies, or never gets ready, before taking it."""
        jobdir, started = hand_over(self, job, jobdir)
        try:
            if on_taken is not None:
                on_taken()
            ended = self.sandbox._wait(self.container, self.pump, job.limits.wall_seconds
                                       - (time.perf_counter() - started), remove_later=True)
        finally:
            self.channel.close()
            self.slot.collect(jobdir / "out")     # the container is removed: nothing changes under the copy
            self.slot.remove()
        return self.sandbox._classify(job, ended, jobdir / "out", self.tail,
                                      {"wall_seconds": time.perf_counter() - started})

    def discard(self) -> None:
        """Remove the container and the slot (idempotent); waits for a launch under way to finish first."""
        with self._lock:
            self._discarded = True
        self._launched.wait(60)
        with self._lock:
            container = self.container
        if container is not None:
            self.sandbox._discard(container)
        self.channel.close()
        self.slot.remove()

    def host_pids(self) -> list[int]:
        """The container's processes as the host numbers them (for tests and diagnostics)."""
        if not self._running():
            return []
        root = int(self.container.attrs["State"].get("Pid") or 0)
        return descendants(root) if root else []


def hidden_mounts(hidden_paths: Sequence[str], mounts: list[Mount]) -> list[Mount]:
    """Mounts that cover each hidden path where a bind mount brings it into the container.

    A hidden host path appears in the container only under a bind mount of a directory that
    holds it (or of the path itself); there it is covered — an empty read-only tmpfs over a
    directory, an empty read-only file over a file. A path no mount brings in is invisible
    already. The engine mounts shallower targets first, so the covers go on top of the trees."""
    covers: dict[str, Mount] = {}
    for path in hidden_paths:
        real = Path(os.path.realpath(path))
        if not real.exists():
            continue
        for mount in mounts:
            if mount["Type"] != "bind":
                continue
            source = Path(os.path.realpath(mount["Source"]))
            if real != source and source not in real.parents:
                continue
            target = str(Path(mount["Target"]) / real.relative_to(source))
            if real.is_dir():
                covers[target] = Mount(target, None, type="tmpfs", read_only=True, tmpfs_size=4096,
                                       tmpfs_mode=0o755)
            else:
                covers[target] = Mount(target, str(_empty_file()), type="bind", read_only=True)
    # a path under a covered directory is gone already (and a mount point inside a read-only tmpfs cannot be made)
    folders = [Path(t) for t, m in covers.items() if m["Type"] == "tmpfs"]
    return [m for t, m in covers.items() if not any(f in Path(t).parents for f in folders)]


@functools.cache
def _empty_file() -> Path:
    """An empty, read-only file to bind over hidden files (in `archlab-<pid>-hidden`, removed at exit or swept)."""
    folder = Path(tempfile.gettempdir()) / f"archlab-{os.getpid()}-hidden"
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder, 0o755)
    empty = folder / "empty"
    empty.touch()
    os.chmod(empty, 0o444)
    remove_at_exit(folder)
    return empty


def _docker_wording(result: EvalResult) -> EvalResult:
    if result.status == "error" and "No space left" in result.log_tail and "No space" not in result.message:
        return result.model_copy(update={"message": f"{result.message} (No space left on the {SCRATCH_MB} MB scratch)"})
    return result


def _read_timed_out(exc: Exception) -> bool:
    return isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower()


def _remove_containers_on_sigterm() -> None:
    """A SIGTERM nobody handles would end archlab without atexit: remove our containers first, then die of it.

    Installed only from the main thread and only over the default action; the CLI's graceful-stop
    handler, when present, takes precedence and restores this one afterwards."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return

    def handler(signum, frame):
        for sandbox in list(_SANDBOXES):
            sandbox.remove_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)


def _pump_logs(container, tail: TailBuffer) -> None:
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            tail.feed(chunk)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass


def _kill(container) -> None:
    try:
        container.kill()
    except ENGINE_ERRORS:
        pass


def _remove(container) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except ENGINE_ERRORS:
        time.sleep(0.2)
        try:
            container.remove(force=True)
        except ENGINE_ERRORS:   # the engine is gone: the next connect() sweeps it
            pass

