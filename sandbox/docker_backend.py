"""The `docker` backend: each job in its own container, through the Docker Engine's SDK.

Every container gets: no network (`network_mode="none"`); a read-only root filesystem; a
size-capped tmpfs at /tmp (the working directory) and /dev/shm; the job's inputs mounted
read-only and its `out/` as the one writable mount; a memory limit with no swap beyond it;
a CPU quota; a pid limit; file-size, open-file and core ulimits; all capabilities dropped and
`no-new-privileges`; a non-root user; an environment with nothing from the host in it; a
wall-clock timeout (enforced here, and by `timeout` inside the container should archlab
die); bounded logs. Containers carry `archlab.*` labels and are always removed: after each
job (try/finally), at exit (atexit), on a SIGTERM nobody else handles, and — for an archlab
that was SIGKILLed — by the sweep of dead owners' leftovers at the next `connect()`. GPUs are requested through device
requests and handed out by a `GpuAllocator` so that concurrent jobs never share one.

An engine that disappears mid-job, or an image removed after `connect()`, is a
`sandbox_error` result saying what to do, never an exception.

What it does not give: protection from kernel exploits (containers share the host
kernel), or from a Docker Engine that is itself misconfigured.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
import time
import weakref
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

from sandbox.base import SandboxUnavailable, TailBuffer, failure
from wire.jobs import EvalJob, EvalResult
from sandbox.gpu import GpuAllocator, NotEnoughGpus
from sandbox.images import IN_CONTAINER_ROOT, ImagePlan, ensure_image, image_plan
from sandbox.process import alive, classify

LABEL = "archlab.job"
SCRATCH_MB = 256          # /tmp tmpfs per job
USER = "65534:65534"      # nobody
GRACE_SECONDS = 5         # the in-container `timeout` fires this long after archlab's own
ENGINE_ERRORS = (docker.errors.APIError, requests.exceptions.RequestException)
_SANDBOXES: weakref.WeakSet = weakref.WeakSet()   # for the SIGTERM safety net


class DockerSandbox:
    name = "docker"
    capabilities = frozenset({"pid_limit", "no_network", "pid_namespace", "readonly_root", "hidden_home"})

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
    def _mounts(self, jobdir: Path) -> list[Mount]:
        mounts = [Mount("/job/job.json", str(jobdir / "job.json"), type="bind", read_only=True),
                  Mount("/job/inputs", str(jobdir / "inputs"), type="bind", read_only=True),
                  Mount("/job/out", str(jobdir / "out"), type="bind", read_only=False)]
        mounts += [Mount(target, source, type="bind", read_only=True) for source, target in self.plan.mounts.items()]
        return mounts

    def _environment(self, job: EvalJob) -> dict[str, str]:
        threads = str(max(1, int(job.limits.cpus)))
        return {"PYTHONPATH": IN_CONTAINER_ROOT, "HOME": "/tmp", "TMPDIR": "/tmp", "PATH": "/usr/bin:/bin",
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads, "LANG": "C.UTF-8"}

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
        command = ["/usr/bin/timeout", "-s", "KILL", str(int(limits.wall_seconds) + GRACE_SECONDS),
                   self.plan.python, "-m", "sandbox.runner", "/job/job.json", "/job/inputs", "/job/out"]
        if not self.plan.offline:
            command = command[4:]
        memory = f"{limits.memory_mb}m"
        file_size = limits.file_size_mb * 1024 * 1024
        options = dict(
            command=command, detach=True, user=USER, working_dir="/tmp", environment=self._environment(job),
            network_mode="none", read_only=True, mounts=self._mounts(jobdir),
            tmpfs={"/tmp": f"size={SCRATCH_MB}m,mode=1777"}, shm_size="64m",
            mem_limit=memory, memswap_limit=memory, nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
            cap_drop=["ALL"], security_opt=["no-new-privileges"], ipc_mode="private",
            ulimits=[Ulimit(name="fsize", soft=file_size, hard=file_size), Ulimit(name="nofile", soft=256, hard=256),
                     Ulimit(name="core", soft=0, hard=0)],
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
            labels={LABEL: job.job_id, "archlab.run": job.run_id, "archlab.owner_pid": str(os.getpid()),
                    "archlab.host": self.host},
        )
        if devices:
            options["device_requests"] = [DeviceRequest(device_ids=devices, capabilities=[["gpu"]])]
        started = time.perf_counter()
        container = None
        try:
            container = self.client.containers.create(self.plan.tag, **options)
            with self._lock:
                self._live.add(container.id)
            container.start()
        except docker.errors.ImageNotFound:
            return failure(job, "sandbox_error", f"the sandbox image {self.plan.tag} is gone (removed after archlab "
                           "started); restart archlab to re-create the offline image, or rebuild it with "
                           f"`docker build -f sandbox/Dockerfile -t {self.plan.tag} .`")
        except docker.errors.APIError as exc:
            if container is not None:
                self._discard(container)
            hint = (" — GPUs need the NVIDIA container toolkit (nvidia-container-toolkit) configured as a Docker "
                    "runtime" if devices else "")
            return failure(job, "sandbox_error", f"the container did not start: {exc.explanation or exc}{hint}")
        except requests.exceptions.RequestException as exc:   # after APIError, which is one too: no connection
            if container is not None:
                self._discard(container)
            return failure(job, "sandbox_error", f"cannot reach the Docker Engine ({exc}); check `docker info`, "
                           "start dockerd, then re-run the job")
        tail = TailBuffer()
        pump = threading.Thread(target=_pump_logs, args=(container, tail), daemon=True)
        pump.start()
        timed_out, returncode, oom, lost = False, None, False, ""
        try:
            try:
                state = container.wait(timeout=limits.wall_seconds)
                returncode = int(state.get("StatusCode", -1))
            except requests.exceptions.RequestException as exc:
                if not _read_timed_out(exc):     # the SDK reports its read timeout as a ConnectionError
                    raise
                timed_out = True
                _kill(container)
            pump.join(timeout=10)
            if not timed_out:
                container.reload()
                oom = bool(container.attrs["State"].get("OOMKilled"))
        except ENGINE_ERRORS as exc:
            lost = f"{type(exc).__name__}: {exc}"
        finally:
            self._discard(container)
        timings = {"wall_seconds": time.perf_counter() - started}
        if lost:
            return failure(job, "sandbox_error", f"lost the Docker Engine during the job ({lost[:300]}); check "
                           "`docker info`, start dockerd if it stopped, then re-run the job", tail.text(), timings)
        if oom:
            return failure(job, "oom", f"the container was killed by the kernel for using more than its "
                           f"{limits.memory_mb} MB memory limit; use a smaller model or chunk the computation",
                           tail.text(), timings)
        if returncode == 137 and not timed_out and timings["wall_seconds"] >= limits.wall_seconds:
            return failure(job, "timeout", "the job ran past its wall-clock limit (killed inside the container)",
                           tail.text(), timings)
        result = classify(job, returncode, timed_out, out, tail.text(), timings)
        return _docker_wording(result)

    def _discard(self, container) -> None:
        _remove(container)
        with self._lock:
            self._live.discard(container.id)


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

