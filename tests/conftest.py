"""Shared fixtures: a small MQAR spec, sandboxes, and helpers to evaluate a source string."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from evaluators.harness import evaluate
from evaluators.tasks import get_task
from wire.jobs import EvalJob, Limits
from sandbox.process import ProcessSandbox

_ids = itertools.count()


@pytest.fixture(scope="session")
def tiny_spec():
    """MQAR small enough to train in a couple of seconds."""
    return get_task("mqar").default_spec(seq_len=32, num_pairs=4, num_queries=4, short_steps=40)


@pytest.fixture(scope="session")
def process_sandbox():
    return ProcessSandbox()


@pytest.fixture
def run_source(tmp_path, tiny_spec, process_sandbox):
    """Evaluate `source` at `fidelity` in a sandbox and return the EvalResult."""
    def run(source: str, fidelity: str = "check", sandbox=None, **limits):
        job = EvalJob(job_id=f"t{next(_ids)}", candidate_id="cand", source=source, task=tiny_spec,
                      fidelity=fidelity, limits=Limits(**{"wall_seconds": 60, "memory_mb": 2048, "cpus": 1, **limits}))
        jobdir = tmp_path / job.job_id
        return evaluate(sandbox or process_sandbox, job, jobdir)
    return run


BASELINE_DIR = Path(__file__).resolve().parent.parent / "evaluators" / "baselines"


def pytest_sessionfinish(session, exitstatus):
    """No archlab container may outlive the test suite."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, nothing to check
        return
    left = client.containers.list(all=True, filters={"label": "archlab.job"})
    if left:
        print(f"\nleftover archlab containers: {[c.name for c in left]}")
        session.exitstatus = 1
