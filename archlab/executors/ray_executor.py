"""The `ray` executor: a run's evaluation jobs on a Ray cluster, one job at a time per Ray actor.

Each of the `workers` actors asks Ray for what one job needs — `cpus` CPUs, `sandbox.gpus`
GPUs, `sandbox.memory_mb` of memory and `executor.resources` — so it lands on whichever node
has them (spread over the nodes where it can). On its node it builds the configured sandbox
(`archlab.sandboxes.make_sandbox`: process or docker) and runs a one-slot `LocalExecutor`
there, so jobs find a warm one-shot worker waiting, on the GPUs Ray gave the actor, exactly
as on one machine: the isolation is the sandbox backend's own, job by job.

No shared filesystem is assumed. The driver (the `archlab run` process) sends the job's
`job.json` and `inputs/` to the actor as bytes; the actor runs it in a scratch directory on
its node and sends back the classified result and `out/` as bytes, which land in the run's
job directory. The host half of the grader stays in the driver: held-out targets never
leave it, and predictions are scored there (`evaluators.harness.evaluate` calls this
executor's `_RemoteSandbox`).

Limits travel with the job unchanged (`EvalJob` as JSON), so a node's sandbox enforces the
same `cpus` and hides the same `hidden_paths` — host paths as the node sees them (an
installation laid out like the driver's has them at the same places; a file that exists
only on the driver never reaches a node). `_RemoteSandbox.capabilities` are the node
sandbox's own, asked once per actor, so the harness's check of a capability a job needs
(`hidden_paths`) holds for where it runs.

A lost worker. When an actor's process or node dies mid-job, Ray restarts the actor (on any
node that fits) and runs the call again, up to `executor.max_retries` times (Ray's own
`max_task_retries`); the job ran on a fresh worker and is reported as `worker_replaced`.
The driver gets exactly one answer per job, and the Lab writes one result for it (its
per-job lock and atomic write). Past the retries the job is a `sandbox_error`, which stops
the run (resumable). `close()` cancels the calls in flight (`ray.cancel`) and ends the
actors, whose sandboxes die with them; a job cancelled so raises `JobCancelled` and leaves
no result, so a resumed run runs it again.

Connection. `executor.address` unset starts a local Ray instance with this machine's
resources (ended again by `close`); "auto", "HOST:PORT" and "ray://HOST:10001" join a
running cluster. A cluster that is not there is a `RayClusterUnavailable` ("no Ray cluster
at ...") from `cluster_capacity`, which the CLI calls before a run starts.

What it does not do: install archlab on the nodes (each needs the driver's archlab, Python
and torch, the same image or environment), autoscale, or preempt a running job. Workers ×
CPUs may exceed the cluster's CPUs only when `executor.workers` says so (each actor then
asks for its share), as on one machine.
"""
from __future__ import annotations

import io
import os
import queue
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import ray
import ray.exceptions

from archlab.executors.base import Evaluate, JobBoard, JobStarted
from archlab.executors.capacity import Capacity, plan_capacity
from archlab.executors.local import LocalExecutor
from archlab.sandboxes import make_sandbox
from archlab.settings import SandboxSettings, Settings
from sandbox.base import failure
from wire.jobs import EvalJob, EvalResult, Limits

PROBE_SECONDS = 5.0           # a cluster address that accepts no TCP connection in this long is not there
_started_here = False         # whether this process started the local Ray instance it is connected to


class RayClusterUnavailable(RuntimeError):
    """No Ray cluster answers at `executor.address`, or a local one cannot start: an infrastructure fault."""


class JobCancelled(RuntimeError):
    """The executor was closed while this job ran on the cluster: it has no result and runs again on resume."""


# --- the cluster ------------------------------------------------------------------------
def connect(address: str | None) -> None:
    """Connect this process to Ray once: a running cluster at `address`, or (None) a new local instance."""
    global _started_here
    if ray.is_initialized():
        return
    if address not in (None, "auto"):
        _probe(address)
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
    if address is None:
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, TimeoutError, ray.exceptions.RayError) as exc:
        where = address or "a local Ray instance"
        raise RayClusterUnavailable(f"no Ray cluster at {where}: {str(exc).strip().splitlines()[0][:300]}. "
                                    + _next_step(address)) from None
    _started_here = address is None


def _probe(address: str) -> None:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise RayClusterUnavailable(f"executor.address {address!r} names no HOST:PORT; " + _next_step(address))
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise RayClusterUnavailable(f"no Ray cluster at {address}: {exc.strerror or exc}. "
                                    + _next_step(address)) from None


def _next_step(address: str | None) -> str:
    if address is None:
        return "Check that Ray can start here (`ray start --head` shows why), or use executor.backend = 'local'"
    return ("Start one (`ray start --head`, with `--ray-client-server-port 10001` for ray://), fix executor.address, "
            "or unset it for a local Ray instance")


def disconnect() -> None:
    """End the local Ray instance this process started (a cluster joined is left running)."""
    global _started_here
    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here = False


def cluster_capacity(settings: Settings) -> Capacity:
    """Workers and threads per job on the cluster `executor.address` names (connecting to it first).

    As `plan_capacity` on one machine, with the cluster's CPUs, GPUs and memory, and no more
    workers than the cluster holds of each of `executor.resources`. ValueError for a request
    the cluster cannot meet; RayClusterUnavailable when there is no cluster."""
    e, s = settings.executor, settings.sandbox
    connect(e.address)
    total = ray.cluster_resources()
    gpus = tuple(str(i) for i in range(int(total.get("GPU", 0))))
    memory_mb = int(total["memory"] / 2**20) if total.get("memory") else None
    where = e.address or "the local Ray instance"
    if s.gpus > len(gpus):
        raise ValueError(f"setting 'sandbox.gpus': a training job asks for {s.gpus} GPU(s) and the Ray cluster at "
                         f"{where} has {len(gpus)}")
    for name, amount in e.resources.items():
        if total.get(name, 0) < amount:
            raise ValueError(f"setting 'executor.resources': a job asks for {amount:g} of {name!r} and the Ray cluster "
                             f"at {where} has {total.get(name, 0):g}; declare it on a node "
                             f"(`ray start --resources '{{\"{name}\": 1}}'`) or remove it")
    capacity = plan_capacity(e.workers, s.cpus, s.gpus, s.memory_mb, e.share_gpus, cores=max(1, int(total.get("CPU", 1))),
                             gpus=gpus, total_memory_mb=memory_mb)
    custom = {name: int(total[name] // amount) for name, amount in e.resources.items() if amount > 0}
    if e.workers is None and custom and min(custom.values()) < capacity.workers:
        bound = min(custom, key=lambda n: custom[n])
        threads = s.cpus if s.cpus is not None else max(1.0, capacity.cpus_per_job * capacity.workers // custom[bound])
        capacity = Capacity(workers=max(1, custom[bound]), cpus_per_job=float(threads), gpus_per_job=s.gpus,
                            gpus=gpus, why=f"from executor.resources: {bound} allows {custom[bound]}")
    cluster = f"Ray cluster at {e.address}" if e.address else "a local Ray instance"
    return Capacity(workers=capacity.workers, cpus_per_job=capacity.cpus_per_job, gpus_per_job=capacity.gpus_per_job,
                    gpus=capacity.gpus, why=f"{cluster}, {capacity.why}")


# --- the node side ----------------------------------------------------------------------
class NodeWorker:
    """One Ray actor: a one-slot local executor on whichever node Ray placed it (see the module docstring)."""

    def __init__(self, sandbox_settings: dict, warm: bool, cpus_per_job: float):
        settings = Settings.model_construct(sandbox=SandboxSettings.model_validate(sandbox_settings))
        devices = tuple(str(g) for g in ray.get_gpu_ids())
        self.node = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.events: list[tuple[str, dict]] = []
        self.local = LocalExecutor(make_sandbox(settings),
                                   Capacity(workers=1, cpus_per_job=cpus_per_job, gpus_per_job=len(devices),
                                            gpus=devices, why="one Ray actor"),
                                   warm=warm, on_event=lambda kind, **info: self.events.append((kind, info)))

    def identity(self) -> dict:
        return {"pid": os.getpid(), "node": self.node, "node_id": self.node_id}

    def capabilities(self) -> list[str]:
        """What this node's sandbox enforces (`sandbox.base`), for the driver's harness to check against."""
        return sorted(getattr(self.local.backend, "capabilities", ()))

    def prestart(self, profiles: list[str]) -> None:
        self.local.prestart([Limits.model_validate_json(p) for p in profiles])

    def wait_ready(self, profile: str, timeout: float) -> bool:
        """Whether this actor's warm worker for jobs of `profile` (a Limits) is ready within `timeout` seconds."""
        limits = Limits.model_validate_json(profile)
        self.local.prestart([limits])
        sandboxes = [sandbox for slot in self.local._slots for sandbox in slot.sandboxes.values()
                     if hasattr(sandbox, "wait_ready")]
        return all(sandbox.wait_ready(limits, timeout) for sandbox in sandboxes)

    def run(self, job_json: str, bundle: bytes) -> tuple[str, bytes, dict]:
        """Run one job shipped as `bundle` (job.json + inputs/); its result, its `out/` as bytes, and what happened."""
        job = EvalJob.model_validate_json(job_json)
        scratch = Path(tempfile.mkdtemp(prefix=f"archlab-{os.getpid()}-ray-"))
        restarted, self.restarted = self.restarted, False     # the first call after a restart may be a retried one
        self.events = []
        try:
            _unpack(bundle, scratch)
            (scratch / "out").mkdir(exist_ok=True)
            result = self.local.run(job, scratch, lambda sandbox, job, jobdir: sandbox.run(job, jobdir))
            return result.model_dump_json(), _pack(scratch, ["out"]), {**self.identity(), "restarted": restarted,
                                                                       "events": self.events}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        self.local.close()


def _pack(root: Path, names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:        # uncompressed: arrays barely shrink, time matters
        for name in names:
            if (root / name).exists():
                tar.add(root / name, arcname=name)
    return buffer.getvalue()


def _unpack(data: bytes, target: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(target, filter="data")                   # no links out, no absolute paths, no devices


# --- the driver side --------------------------------------------------------------------
@dataclass
class _Slot:
    index: int
    actor: Any
    capabilities: frozenset[str] | None = None    # its node's sandbox's, asked once


class RayExecutor:
    name = "ray"

    def __init__(self, settings: Settings, capacity: Capacity, on_event: Callable[..., None] = lambda kind, **i: None):
        e, s = settings.executor, settings.sandbox
        self.capacity = capacity
        self.workers = capacity.workers
        self.on_event = on_event
        self._board = JobBoard()
        self.listeners = self._board.listeners
        self.sandbox_name: str = s.backend
        self.max_retries = e.max_retries
        connect(e.address)
        cores = ray.cluster_resources().get("CPU", capacity.workers * capacity.cpus_per_job)
        gpus: float = capacity.gpus_per_job
        if e.share_gpus and gpus:
            gpus = min(gpus, len(capacity.gpus) / capacity.workers)  # a fraction of a GPU each (Ray's own sharing)
        options = dict(num_cpus=min(capacity.cpus_per_job, cores / capacity.workers), num_gpus=gpus,
                       memory=s.memory_mb * 2**20, resources=dict(e.resources), max_restarts=-1,
                       max_task_retries=e.max_retries, scheduling_strategy="SPREAD")
        remote = ray.remote(NodeWorker).options(**options)
        payload = s.model_dump(mode="json")
        self._slots = [_Slot(i, remote.remote(payload, e.warm, capacity.cpus_per_job)) for i in range(self.workers)]
        self._free: queue.Queue[_Slot] = queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._calls: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def prestart(self, limits: list[Limits]) -> None:
        """Ask every actor to start warm workers for these job profiles (returns at once)."""
        profiles = [p.model_dump_json() for p in limits]
        for slot in self._slots:
            slot.actor.prestart.remote(profiles)

    def wait_ready(self, limits: Limits, timeout: float = 300) -> bool:
        """Whether every actor has a warm worker for jobs of these limits ready within `timeout` seconds
        (benchmarks start their clocks after it, as `sandbox.warm.WarmSandbox.wait_ready` does)."""
        return all(ray.get([slot.actor.wait_ready.remote(limits.model_dump_json(), timeout) for slot in self._slots]))

    def identities(self, timeout: float = 120) -> list[dict]:
        """Each worker's process id and node, once it is up (for diagnostics and tests)."""
        return ray.get([slot.actor.identity.remote() for slot in self._slots], timeout=timeout)

    def run(self, job: EvalJob, jobdir: Path, evaluate: Evaluate) -> EvalResult:
        slot = self._free.get()
        try:
            if self._closed:
                raise JobCancelled(f"job {job.job_id}: the Ray executor is closed")
            self._changed(add=JobStarted(job.job_id, job.fidelity, slot.index, (), time.time()))
            return evaluate(_RemoteSandbox(self, slot), job, jobdir)
        finally:
            self._changed(remove=slot.index)
            self._free.put(slot)

    def _call(self, slot: _Slot, job: EvalJob, jobdir: Path) -> EvalResult:
        """Ship the job to the slot's actor, wait for its answer, and land its `out/` in `jobdir`."""
        started = time.perf_counter()
        bundle = _pack(jobdir, ["job.json", "inputs"])
        with self._lock:
            if self._closed:
                raise JobCancelled(f"job {job.job_id}: the Ray executor is closed")
            ref = slot.actor.run.remote(job.model_dump_json(), bundle)
            self._calls[slot.index] = ref
        try:
            answer, out, info = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            raise JobCancelled(f"job {job.job_id} was cancelled on the Ray cluster") from None
        except ray.exceptions.RayActorError as exc:
            if self._closed:
                raise JobCancelled(f"job {job.job_id} was cancelled on the Ray cluster") from None
            return failure(job, "sandbox_error", f"the Ray worker running the job was lost "
                           f"{1 + self.max_retries} time(s) and Ray could not run it again: {_cause(exc)}. Check the "
                           "cluster's nodes (`ray status`); `archlab resume` runs the job again")
        except ray.exceptions.RayTaskError as exc:
            return failure(job, "sandbox_error", f"the Ray worker could not run the job on its node: {_cause(exc)}. "
                           "Check that the node has archlab and the sandbox backend installed")
        finally:
            with self._lock:
                self._calls.pop(slot.index, None)
        shutil.rmtree(jobdir / "out", ignore_errors=True)     # only this answer's files, whatever was there before
        _unpack(out, jobdir)
        result = EvalResult.model_validate_json(answer)
        for kind, fields in info["events"]:
            self.on_event(kind, **{**fields, "worker": slot.index})
        if info["restarted"]:
            self.on_event("worker_replaced", worker=slot.index, job_id=job.job_id,
                          reason=f"the Ray worker was lost (its process or node died) and Ray restarted it on "
                                 f"{info['node']}; the job ran there")
        result.environment["ray_node"] = info["node"]             # where it ran: the node's address and Ray id
        result.environment["ray_node_id"] = info["node_id"]
        result.timings["ray_seconds"] = time.perf_counter() - started
        return result

    def _capabilities(self, slot: _Slot) -> frozenset[str]:
        """The capabilities of the sandbox on the slot's node (asked once; none while the actor cannot answer)."""
        if slot.capabilities is None:
            try:
                slot.capabilities = frozenset(ray.get(slot.actor.capabilities.remote()))
            except ray.exceptions.RayError:
                return frozenset()
        return slot.capabilities

    def in_flight(self) -> list[JobStarted]:
        return self._board.in_flight()

    def _changed(self, add: JobStarted | None = None, remove: int | None = None) -> None:
        self._board.changed(add, remove)

    def close(self) -> None:
        """Cancel the jobs in flight, end the actors (and their sandboxes), and a local Ray instance started here."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = list(self._calls.values())
        for ref in calls:
            ray.cancel(ref)
        for slot in self._slots:
            ray.kill(slot.actor, no_restart=True)
        disconnect()


class _RemoteSandbox:
    """What `evaluate` runs a job in: the job's files go to a Ray actor and its `out/` comes back."""

    def __init__(self, executor: RayExecutor, slot: _Slot):
        self.executor = executor
        self.slot = slot
        self.name: str = executor.sandbox_name

    @property
    def capabilities(self) -> frozenset[str]:
        """The node's sandbox's capabilities: the harness refuses a job that needs one it lacks (hidden_paths)."""
        return self.executor._capabilities(self.slot)

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        return self.executor._call(self.slot, job, jobdir)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]
