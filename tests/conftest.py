"""Shared fixtures: a small MQAR spec, sandboxes, and helpers to evaluate a source string."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from evaluators.harness import evaluate
from evaluators.tasks import get_task
from wire.jobs import EvalJob, Limits
from sandbox.process import ProcessSandbox

_ids = itertools.count()


def pytest_configure(config):
    """Under pytest-xdist, each worker's own torch gets its share of the cores (one each for `make test`'s two on
    two cores). torch's default is every core per process; two workers training in-process then oversubscribe
    the machine, and OpenMP's spinning threads made a 2-second training step take 10 to 25 times as long.
    Sandboxed jobs are not touched: their runner sets their threads from the job's limits."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1 and "PYTEST_XDIST_WORKER" in os.environ:
        import torch
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


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

# the server `.ci/services-setup.sh` starts; set ARCHLAB_TEST_POSTGRES_URL to use another (its role needs CREATEDB)
TEST_POSTGRES_URL = os.environ.get("ARCHLAB_TEST_POSTGRES_URL",
                                   "postgresql://archlab:archlab-test-pw@127.0.0.1:55432/archlab")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture
def postgres_url():
    """The URL of a fresh, empty database on the test Postgres server, dropped after the test. Skips (saying
    why) when no server answers, except under CI, where that fails."""
    import uuid
    from urllib.parse import urlsplit

    import psycopg
    from archlab.settings import without_password
    try:
        admin = psycopg.connect(TEST_POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        message = (f"no test Postgres at {without_password(TEST_POSTGRES_URL)} ({str(exc).strip()[:200]}); "
                   "run `bash .ci/services-setup.sh` or set ARCHLAB_TEST_POSTGRES_URL")
        if under_ci():
            pytest.fail(f"under CI the Postgres tests may not skip: {message}")
        pytest.skip(message)
    name = f"archlab_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(TEST_POSTGRES_URL)._replace(path=f"/{name}").geturl()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# the seconds each scheduling unit took in a measured `make test` (tests/module_seconds.py writes them); only the
# order in which units are handed out depends on them, never which tests run
MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")
UNMEASURED_SECONDS_PER_TEST = 1.0      # a module not measured yet: most tests are quick unit tests


def module_seconds() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(MODULE_SECONDS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _xdist_scope(nodeid: str) -> str:
    """The unit of work a pytest-xdist worker gets (`make test`: -n 2 --dist loadfile): every docker test in one
    unit, run one after another (they assert that no archlab container exists); otherwise a whole module (its
    module fixtures, a finished run or a built wheel, are built once)."""
    return "docker" if "docker" in nodeid.lower() else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)     # a hook of pytest-xdist: without it (-p no:xdist) nothing calls it
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadfile`, schedule by `_xdist_scope`: loadfile's modules, plus one unit for all docker tests.
    It is decided from node ids, in the controller: `xdist_group` marks with `--dist loadgroup` would say it
    better, but no longer reach the scheduler on pytest 9.2 (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    costs = module_seconds()

    class ModulesAndDocker(LoadScopeScheduling):     # as LoadFileScheduling, with one more rule
        def _split_scope(self, nodeid: str) -> str:
            return _xdist_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            """Hand out the costliest unit left first, the longest-first rule that keeps the workers' ends close
            (xdist's own order is by number of tests: a module of few tests that take minutes, such as
            `test_resume_crash`, came last and could leave one worker running it alone)."""
            def cost(scope: str) -> float:
                return costs.get(scope, UNMEASURED_SECONDS_PER_TEST * len(self.workqueue[scope]))
            self.workqueue.move_to_end(max(self.workqueue, key=cost), last=False)
            super()._assign_work_unit(node)

    return ModulesAndDocker(config, log)


def pytest_collection_modifyitems(config, items):
    """A docker test must say so in its node id (module, name or parameter id): that is how it is scheduled."""
    hidden = [item.nodeid for item in items
              if item.get_closest_marker("docker") and _xdist_scope(item.nodeid) != "docker"]
    if hidden:
        raise pytest.UsageError(f"docker-marked tests without 'docker' in their node id: {hidden}; name or "
                                "parametrize them so (tests/conftest.py schedules docker tests by it)")


@pytest.hookimpl(trylast=True)         # under xdist: after the controller has shut its workers down
def pytest_sessionfinish(session, exitstatus):
    """No archlab container may outlive the test suite: checked once, after every test. Under pytest-xdist each
    worker's session ends while others still run; the controller's, which ends last, does the check."""
    if hasattr(session.config, "workerinput"):
        return
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
