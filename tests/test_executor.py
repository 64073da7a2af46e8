"""The local executor: how many jobs run at once, threads and GPUs per job, and jobs through real warm workers."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archlab.executors.capacity import plan_capacity
from archlab.executors.local import LocalExecutor
from evaluators.harness import evaluate
from tests.hostile_cases import MODEL
from wire.jobs import EvalJob, EvalResult, Limits


def test_workers_follow_the_cores_and_split_the_threads():
    two = plan_capacity(None, None, 0, 4096, cores=2, gpus=(), total_memory_mb=24_000)
    assert (two.workers, two.cpus_per_job) == (2, 1.0)
    big = plan_capacity(None, None, 0, 4096, cores=16, gpus=(), total_memory_mb=128_000)
    assert (big.workers, big.cpus_per_job) == (16, 1.0)
    wide = plan_capacity(None, 2, 0, 4096, cores=2, gpus=(), total_memory_mb=24_000)
    assert (wide.workers, wide.cpus_per_job) == (1, 2.0)          # two threads per job: one job at a time
    asked = plan_capacity(2, None, 0, 4096, cores=8, gpus=(), total_memory_mb=64_000)
    assert (asked.workers, asked.cpus_per_job) == (2, 4.0)        # workers x threads <= cores
    tight = plan_capacity(None, None, 0, 4096, cores=16, gpus=(), total_memory_mb=9_000)
    assert tight.workers == 2 and "memory" in tight.why


def test_gpus_bound_the_workers_unless_shared():
    four = plan_capacity(None, None, 1, 4096, cores=32, gpus=("0", "1", "2", "3"), total_memory_mb=256_000)
    assert four.workers == 4 and "GPUs" in four.why
    pairs = plan_capacity(None, None, 2, 4096, cores=32, gpus=("0", "1", "2", "3"), total_memory_mb=256_000)
    assert pairs.workers == 2
    with pytest.raises(ValueError, match="executor.workers"):
        plan_capacity(3, None, 2, 4096, cores=32, gpus=("0", "1", "2", "3"))
    shared = plan_capacity(3, None, 2, 4096, share_gpus=True, cores=32, gpus=("0", "1", "2", "3"))
    assert shared.workers == 3
    with pytest.raises(ValueError, match="sandbox.gpus"):
        plan_capacity(None, None, 1, 4096, cores=4, gpus=())


class SlowBackend:
    """A sandbox double that records how many of its jobs overlap and which devices each was given."""

    name = "slow"
    capabilities = frozenset()

    def __init__(self, seconds: float = 0.3):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.devices: dict[str, tuple[str, ...]] = {}
        self.held: set[str] = set()
        self.overlap_on_a_device = False

    def _run(self, job: EvalJob, devices: tuple[str, ...] = ()) -> EvalResult:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.devices[job.job_id] = devices
            if self.held & set(devices):
                self.overlap_on_a_device = True
            self.held |= set(devices)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.held -= set(devices)
        return EvalResult(job_id=job.job_id, candidate_id=job.candidate_id, fidelity=job.fidelity, status="ok")

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        return self._run(job)

    def spawn(self, limits: Limits, devices=()):
        backend = self

        class Worker:
            refused = ""                              # the backend started it (sandbox.base.Worker)

            def run(self, job, jobdir):
                return backend._run(job, tuple(devices))
        return Worker()


def _job(i: int, tiny_spec, gpus: int = 0, fidelity: str = "short") -> EvalJob:
    return EvalJob(job_id=f"j{i}", candidate_id=f"c{i}", source=MODEL, task=tiny_spec, fidelity=fidelity,
                   limits=Limits(wall_seconds=60, cpus=1, gpus=gpus))


def _submit_all(executor, jobs, tmp_path):
    direct = lambda sandbox, job, jobdir: sandbox.run(job, jobdir)   # noqa: E731 - the sandbox alone, no harness
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: executor.run(job, tmp_path / job.job_id, direct), jobs))


def test_no_more_jobs_run_at_once_than_there_are_workers(tmp_path, tiny_spec):
    backend = SlowBackend()
    executor = LocalExecutor(backend, plan_capacity(2, 1, 0, 1024, cores=2, gpus=()), warm=False)
    seen = []
    executor.listeners.append(lambda running: seen.append(len(running)))
    results = _submit_all(executor, [_job(i, tiny_spec) for i in range(5)], tmp_path)
    assert [r.status for r in results] == ["ok"] * 5
    assert backend.most == 2 and max(seen) == 2 and seen[-1] == 0
    assert executor.in_flight() == []


def test_each_gpu_job_gets_its_own_device(tmp_path, tiny_spec):
    backend = SlowBackend()
    executor = LocalExecutor(backend, plan_capacity(None, 1, 1, 1024, cores=8, gpus=("0", "1"), total_memory_mb=8000),
                             warm=False)
    assert executor.workers == 2
    _submit_all(executor, [_job(i, tiny_spec, gpus=1) for i in range(4)], tmp_path)
    assert not backend.overlap_on_a_device
    assert {d for d in backend.devices.values()} == {("0",), ("1",)}
    _submit_all(executor, [_job(10, tiny_spec, gpus=0, fidelity="check")], tmp_path)
    assert backend.devices["j10"] == ()                           # a check job sees none of the slot's GPUs


# a candidate that says, on its log, when its module started and finished loading (the sleep makes the span long
# enough that two jobs started together must overlap, and one started after another finished cannot)
SLOW_MODEL = """
import time
print(f"loading {time.time():.6f}", flush=True)
time.sleep(1.5)
print(f"loaded {time.time():.6f}", flush=True)
""" + MODEL


def _span(result: EvalResult) -> tuple[float, float]:
    stamps = dict(line.split() for line in result.log_tail.splitlines() if line.startswith(("loading ", "loaded ")))
    return float(stamps["loading"]), float(stamps["loaded"])


def test_real_jobs_run_side_by_side_in_warm_workers(tmp_path, tiny_spec, process_sandbox):
    limits = Limits(wall_seconds=60, memory_mb=2048, cpus=1)
    executor = LocalExecutor(process_sandbox, plan_capacity(2, 1, 0, 2048, cores=2, gpus=()), warm=True)
    try:
        executor.prestart([limits])
        for slot in executor._slots:          # both workers ready before the jobs come, as in a run under way
            assert all(sandbox.wait_ready(limits, 120) for sandbox in slot.sandboxes.values())
        jobs = [EvalJob(job_id=f"w{i}", candidate_id=f"c{i}", source=SLOW_MODEL, task=tiny_spec, fidelity="check",
                        limits=limits) for i in range(3)]
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda job: executor.run(job, tmp_path / job.job_id, evaluate), jobs))
        assert [r.status for r in results] == ["ok"] * 3, [r.message for r in results]
        assert all(r.environment.get("functional_hash") for r in results)
    finally:
        executor.close()
    spans = sorted(_span(r) for r in results)
    # side by side: the first two candidates were loading at the same moment, in two sandboxes ...
    assert spans[1][0] < spans[0][1], spans
    # ... and never three at once with two workers: the third started after one of the first two was done
    assert spans[2][0] >= min(spans[0][1], spans[1][1]), spans
