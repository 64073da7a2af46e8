"""Docker-specific behaviour: labels and cleanup, sweeping a dead run's leftovers, image and GPU failures, a loop run."""
from __future__ import annotations

import json
import subprocess
import sys

import docker
import pytest
from docker.types import Mount

from sandbox.contract import EvalJob, Limits
from sandbox.gpu import GpuAllocator, NotEnoughGpus
from tests.docker_support import docker_sandbox_or_skip
from tests.hostile_cases import MODEL
from tests.runs_support import archlab, events, only_run

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def box():
    return docker_sandbox_or_skip()


def ours(client):
    return client.containers.list(all=True, filters={"label": "archlab.job"})


def job(tiny_spec, job_id, source=MODEL, **limits):
    return EvalJob(job_id=job_id, run_id="r-test", candidate_id="c", source=source, task=tiny_spec, fidelity="check",
                   limits=Limits(**{"wall_seconds": 60, "memory_mb": 1024, "cpus": 1, **limits}))


def test_containers_are_labelled_isolated_and_removed(box, tiny_spec, tmp_path):
    import threading
    import time
    from evaluators.harness import evaluate
    slow = "import time\ntime.sleep(4)\n" + MODEL
    done = {}
    worker = threading.Thread(target=lambda: done.update(result=evaluate(box, job(tiny_spec, "label-1", slow), tmp_path / "j")))
    worker.start()
    deadline = time.monotonic() + 30
    running = []
    while not running and time.monotonic() < deadline:
        running = box.client.containers.list(filters={"label": "archlab.job=label-1"})
        time.sleep(0.1)
    assert running, "the job's container was never seen running"
    attrs = running[0].attrs
    worker.join(timeout=120)
    assert done["result"].status == "ok", done["result"].message
    assert running[0].labels["archlab.run"] == "r-test"
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert attrs["Config"]["User"] == "65534:65534" and "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] == 1024 * 1024 * 1024 and host["PidsLimit"] == 256
    assert not any(k.startswith(("OPENAI", "AWS", "GITHUB")) for k in attrs["Config"]["Env"])
    assert not ours(box.client)


def test_leftovers_of_a_dead_run_are_swept_at_connect(box):
    client = box.client
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    container = client.containers.create(box.plan.tag, command=["/usr/bin/sleep", "300"], labels={
        "archlab.job": "orphan", "archlab.owner_pid": dead.stdout.strip(), "archlab.host": box.host},
        mounts=[Mount(t, src, type="bind", read_only=True) for src, t in box.plan.mounts.items()])
    container.start()
    from sandbox.docker_backend import DockerSandbox
    fresh = DockerSandbox.connect()
    assert fresh is not None
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container.id)


def test_missing_prebuilt_image_is_a_clear_error():
    from sandbox.base import SandboxUnavailable
    from sandbox.docker_backend import DockerSandbox
    with pytest.raises(SandboxUnavailable, match="docker build -f sandbox/Dockerfile"):
        DockerSandbox.connect(image="archlab-no-such-image:1")


def test_gpu_request_without_the_nvidia_runtime_leaves_nothing_behind(box, tiny_spec, tmp_path):
    from sandbox.docker_backend import DockerSandbox
    if box.gpus.devices:
        pytest.skip("this machine has GPUs; the failure path needs a machine without the NVIDIA runtime")
    pretend = DockerSandbox(box.client, box.plan, GpuAllocator(devices=["0"]))
    from evaluators.harness import evaluate
    result = evaluate(pretend, job(tiny_spec, "gpu-1", gpus=1), tmp_path / "g")
    assert result.status == "sandbox_error"
    assert "NVIDIA container toolkit" in result.message
    assert not ours(box.client)


def test_gpu_allocator_never_shares_unless_told():
    allocator = GpuAllocator(devices=["0", "1"])
    with allocator.acquire(1) as a, allocator.acquire(1) as b:
        assert a != b
        with pytest.raises(NotEnoughGpus):
            with allocator.acquire(1, timeout=0.1):
                pass
    shared = GpuAllocator(devices=["0"], share=True)
    with shared.acquire(1) as a, shared.acquire(1) as b:
        assert a == b == ["0"]
    with pytest.raises(NotEnoughGpus, match="has 0"):
        with GpuAllocator(devices=[]).acquire(1):
            pass


def test_a_loop_runs_with_the_docker_sandbox(tmp_path, box):
    out = archlab("run", "--rounds", "1", "--sandbox", "docker", "--runs-dir", str(tmp_path), timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    log = events(only_run(tmp_path))
    assert {e["payload"]["sandbox"] for e in log if e["type"] == "job_started"} == {"docker"}
    assert log[-1]["type"] == "run_finished"
    assert not ours(box.client)
