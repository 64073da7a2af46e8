"""The Ray executor on a real local Ray instance: a whole run, a worker killed mid-job, cancellation, bad addresses.

One Ray instance (`ray.init(num_cpus=2)`) serves the module; `archlab run` subprocesses join it
by its address, as they would join a cluster. Nothing is mocked: jobs run in the process
sandbox inside Ray actors, and their files travel to and from the actors as bytes.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (make install installs it)")

from archlab.backends import capacity, make_executor  # noqa: E402
from archlab.executors.ray_executor import JobCancelled  # noqa: E402
from archlab.settings import Settings, SettingsError  # noqa: E402
from evaluators.harness import evaluate  # noqa: E402
from tests.hostile_cases import MODEL  # noqa: E402
from tests.runs_support import archlab, events, only_run  # noqa: E402
from wire.jobs import EvalJob, Limits  # noqa: E402

SLEEPY = MODEL.replace("def build_model(spec):\n", "def build_model(spec):\n    import time\n    time.sleep(SECONDS)\n")


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray instance with 2 CPUs, started for this module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _settings(address: str, **executor) -> Settings:
    return Settings(executor={"backend": "ray", "address": address, "workers": 1, **executor},
                    sandbox={"cpus": 1, "memory_mb": 2048})


def _job(tiny_spec, job_id: str, seconds: float) -> EvalJob:
    return EvalJob(job_id=job_id, candidate_id="cand", source=SLEEPY.replace("SECONDS", str(seconds)), task=tiny_spec,
                   fidelity="check", limits=Limits(wall_seconds=120, memory_mb=2048, cpus=1))


def _running_the_job(pid: int) -> bool:
    """Whether Ray's worker process `pid` is inside its `run` method (Ray names the process after the call)."""
    try:
        return b"NodeWorker.run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_run_on_ray_brings_every_result_back_into_the_run_directory(tmp_path, cluster):
    done = archlab("run", "--rounds", "1", "--random-pool", "0", "--runs-dir", str(tmp_path),
                   extra_env={"ARCHLAB_EXECUTOR__BACKEND": "ray", "ARCHLAB_EXECUTOR__ADDRESS": cluster})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Ray cluster at {cluster}" in done.stdout                    # the capacity line names the cluster
    run_dir = only_run(tmp_path)
    log = events(run_dir)
    assert log[-1]["type"] == "run_finished"
    results = [e["payload"] for e in log if e["type"] == "result" and e["payload"].get("result")]
    assert len(results) >= 5                                             # 3 baselines + 2 proposals, some twice
    node = ray.util.get_node_ip_address()
    for result in results:                                               # every sandbox job ran in a Ray actor ...
        assert result["result"]["environment"]["ray_node"] == node
        assert result["result"]["timings"]["ray_seconds"] >= result["result"]["timings"]["wall_seconds"]
    reports = list(run_dir.glob("candidates/*/jobs/*/out/report.json"))
    assert len(reports) == len(results)                                  # ... and its out/ came back here
    assert json.loads((run_dir / "run.json").read_text())["settings"]["executor"]["backend"] == "ray"
    deadline = time.monotonic() + 30                                     # the run's actors ended with it
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2


def test_a_worker_killed_mid_job_is_retried_once_and_counted_once(tmp_path, cluster, tiny_spec):
    seen: list[tuple[str, dict]] = []
    settings = _settings(cluster)
    executor = make_executor(settings, sandbox=None, on_event=lambda kind, **info: seen.append((kind, info)))
    try:
        (before,) = executor.identities()
        job = _job(tiny_spec, "killed-check-0", seconds=4)
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(result=executor.run(job, tmp_path / "job", evaluate)))
        runner.start()
        deadline = time.monotonic() + 60
        while not _running_the_job(before["pid"]):
            assert time.monotonic() < deadline, "the job never started on its Ray worker"
            time.sleep(0.05)
        time.sleep(1.0)                                                  # inside the candidate's 4-second build
        os.kill(before["pid"], 9)                                        # the worker process (and its sandbox) dies
        runner.join(timeout=180)
        assert not runner.is_alive()
        result = outcome["result"]
        assert result.status == "ok", result.message                    # Ray ran the job again, on a new worker
        assert result.metrics["params"] > 0
        (after,) = executor.identities()
        assert after["pid"] != before["pid"]
        replaced = [info for kind, info in seen if kind == "worker_replaced"]
        assert [r["job_id"] for r in replaced] == [job.job_id]           # retried once, reported once
        assert sorted(p.name for p in (tmp_path / "job" / "out").iterdir()) == ["report.json"]  # one answer landed
    finally:
        executor.close()


def test_close_cancels_the_job_in_flight_and_leaves_no_result(tmp_path, cluster, tiny_spec):
    executor = make_executor(_settings(cluster), sandbox=None)
    (worker,) = executor.identities()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = executor.run(_job(tiny_spec, "cancelled-check-0", seconds=60), tmp_path / "job", evaluate)
        except JobCancelled as exc:
            outcome["cancelled"] = str(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    while not _running_the_job(worker["pid"]):
        assert time.monotonic() < deadline, "the job never started on its Ray worker"
        time.sleep(0.05)
    started = time.monotonic()
    executor.close()
    runner.join(timeout=30)
    assert not runner.is_alive() and time.monotonic() - started < 30
    assert "cancelled" in outcome and "result" not in outcome, outcome
    assert not (tmp_path / "job" / "out" / "report.json").exists()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{worker['pid']}").exists()                 # the actor (and its sandbox) ended


def test_a_job_on_ray_keeps_its_limits_and_the_nodes_capabilities(tmp_path, cluster, tiny_spec):
    import sys

    from sandbox.process import process_capabilities
    secret = Path(sys.prefix) / f".archlab-ray-hidden-{os.getpid()}"           # where every backend can read
    secret.write_text("ray-secret")
    source = f"print('hidden:', repr(open({str(secret)!r}).read()))\n" + MODEL
    job = EvalJob(job_id="ray-hidden-0", candidate_id="cand", source=source, task=tiny_spec, fidelity="check",
                  limits=Limits(wall_seconds=120, memory_mb=2048, cpus=1, hidden_paths=(str(secret),)))
    seen: dict = {}

    def run(sandbox, job, jobdir):
        seen["capabilities"] = sandbox.capabilities                     # what the harness checks before it sends
        return evaluate(sandbox, job, jobdir)

    executor = make_executor(_settings(cluster), sandbox=None)
    try:
        result = executor.run(job, tmp_path / "job", run)
    finally:
        executor.close()
        secret.unlink()
    assert seen["capabilities"] == process_capabilities()              # the node's own, not an empty set
    assert result.status == "ok", result.message
    if "hidden_paths" in seen["capabilities"]:
        assert "hidden: ''" in result.log_tail and "ray-secret" not in result.log_tail


def test_the_cluster_decides_workers_and_a_resource_it_lacks_is_refused(cluster):
    assert capacity(_settings(cluster, workers=None)).workers == 2      # 2 CPUs, 1 per job
    with pytest.raises(SettingsError, match="node_b"):
        capacity(_settings(cluster, workers=None, resources={"node_b": 1}))


def test_no_ray_cluster_at_the_address_is_a_clear_error_before_the_run_starts(tmp_path):
    with socket.socket() as held:                                        # bound, never listening: nothing answers
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        done = archlab("run", "--rounds", "1", "--runs-dir", str(tmp_path), timeout=120,
                       extra_env={"ARCHLAB_EXECUTOR__BACKEND": "ray",
                                  "ARCHLAB_EXECUTOR__ADDRESS": f"ray://127.0.0.1:{port}"})
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())                                  # as printed, whatever the line breaks
    assert f"no Ray cluster at ray://127.0.0.1:{port}" in said
    assert "ray start --head" in said                                    # and what to do about it
    assert not any(tmp_path.iterdir())                                   # no run directory was made
