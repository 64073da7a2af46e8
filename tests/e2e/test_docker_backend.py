"""Docker-specific behaviour: labels and cleanup, sweeping a dead run's leftovers, image and GPU failures, a loop run."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest
from docker.types import Mount

from wire.jobs import EvalJob, Limits
from sandbox.gpu import GpuAllocator, NotEnoughGpus
from tests.docker_support import docker_sandbox_or_skip
from tests.hostile_cases import MODEL
from tests.runs_support import archlab, events, only_run

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def box():
    return docker_sandbox_or_skip()


def ours(client):
    """archlab containers of this test process, or of one that has ended (a CLI it ran); another live
    archlab process on the same engine (a benchmark, a second test run) is not ours."""
    import os
    from sandbox.process import alive
    return [c for c in client.containers.list(all=True, filters={"label": "archlab.job"})
            if int(c.labels.get("archlab.owner_pid", "0") or 0) in (0, os.getpid())
            or not alive(int(c.labels.get("archlab.owner_pid", "0") or 0))]


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
    assert host["NanoCpus"] == 1_000_000_000                      # cpus=1 is a quota, not a request
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


def test_missing_prebuilt_image_is_a_clear_error(box):
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


def _when_running(client, job_id: str, timeout: float = 60):
    """The container of `job_id` once it runs, or None."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = client.containers.list(filters={"label": f"archlab.job={job_id}"})
        if running:
            return running[0]
        time.sleep(0.1)
    return None


def test_unreachable_engine_is_unavailable_at_connect_and_sandbox_error_at_run(tiny_spec, tmp_path, monkeypatch):
    # needs no engine (it is about having none): it runs, rather than skips, where there is none
    from evaluators.harness import evaluate
    from sandbox.base import SandboxUnavailable
    from sandbox.docker_backend import DockerSandbox
    from sandbox.images import offline_plan
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SandboxUnavailable, match="start dockerd"):
        DockerSandbox.connect()
    gone = DockerSandbox(docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41"),
                         offline_plan(), GpuAllocator(devices=[]))
    result = evaluate(gone, job(tiny_spec, "down-1"), tmp_path / "d")
    assert result.status == "sandbox_error" and "Docker Engine" in result.message, result.message


def test_image_removed_after_connect_is_a_sandbox_error(box, tiny_spec, tmp_path):
    from evaluators.harness import evaluate
    from sandbox.docker_backend import DockerSandbox
    from sandbox.images import ImagePlan
    missing = DockerSandbox(box.client, ImagePlan(tag="archlab-no-such-image:1", labels={}, python="python",
                                                  offline=False), GpuAllocator(devices=[]))
    result = evaluate(missing, job(tiny_spec, "noimage-1"), tmp_path / "m")
    assert result.status == "sandbox_error" and "archlab-no-such-image:1" in result.message
    assert "docker build" in result.message
    assert not ours(box.client)


def test_a_container_killed_from_outside_is_killed_not_timeout(box, tiny_spec, tmp_path):
    import threading
    from evaluators.harness import evaluate
    slow = "import time\ntime.sleep(120)\n" + MODEL
    done = {}
    worker = threading.Thread(target=lambda: done.update(
        result=evaluate(box, job(tiny_spec, "outside-1", slow, wall_seconds=60), tmp_path / "k")))
    worker.start()
    container = _when_running(box.client, "outside-1")
    assert container is not None, "the job's container was never seen running"
    container.kill()
    worker.join(timeout=60)
    assert done["result"].status == "killed", (done["result"].status, done["result"].message)
    assert "SIGKILL" in done["result"].message
    assert not ours(box.client)


CHILD = '''
import sys, threading
from evaluators.harness import evaluate
from evaluators.tasks import get_task
from wire.jobs import EvalJob, Limits
from sandbox.docker_backend import DockerSandbox
box = DockerSandbox.connect()
spec = get_task("mqar").default_spec(seq_len=32, num_pairs=4, num_queries=4)
job = EvalJob(job_id=sys.argv[1], candidate_id="c", source="import time\\ntime.sleep(300)\\n", task=spec,
              fidelity="check", limits=Limits(wall_seconds=120, memory_mb=1024, cpus=1))
threading.Thread(target=evaluate, args=(box, job, __import__("pathlib").Path(sys.argv[2])), daemon=True).start()
threading.Event().wait()
'''


def test_sigterm_to_archlab_removes_its_running_container(box, tmp_path):
    import os
    import signal
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", CHILD, "sigterm-1", str(tmp_path / "s")], cwd=root,
                             env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert _when_running(box.client, "sigterm-1") is not None, "the job's container was never seen running"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == -signal.SIGTERM      # it still dies of the signal, after cleaning up
    finally:
        child.kill()
    assert not box.client.containers.list(all=True, filters={"label": "archlab.job=sigterm-1"})


def test_a_warm_worker_is_isolated_like_a_cold_container_and_removed(box, tiny_spec, tmp_path):
    from evaluators.harness import evaluate
    from sandbox.warm import WarmSandbox
    warm = WarmSandbox(box)
    limits = Limits(wall_seconds=60, memory_mb=1024, cpus=1)
    try:
        assert warm.wait_ready(limits, 120)
        worker = warm.idle(limits)
        attrs = box.client.containers.get(worker.container.id).attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert attrs["Config"]["User"] == "65534:65534" and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == host["MemorySwap"] == 1024 * 1024 * 1024 and host["PidsLimit"] == 256
        assert host["NanoCpus"] == 1_000_000_000
        writable = sorted(m["Destination"] for m in attrs["Mounts"] if m["RW"])
        assert writable == ["/job/out"], attrs["Mounts"]
        result = evaluate(warm, job(tiny_spec, "warm-1"), tmp_path / "w")
        assert result.status == "ok", result.message
        assert _removed_within(box, worker.container.id, 30)     # removed off the job's clock, but removed
    finally:
        warm.close()
    assert not ours(box.client)


def _removed_within(box, container_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            box.client.containers.get(container_id)
        except docker.errors.NotFound:
            return True
        time.sleep(0.1)
    return False


def test_a_warm_worker_starts_at_the_least_cpu_weight_and_runs_its_job_at_full_weight(box, tiny_spec, tmp_path):
    """Its start-up (torch's import) takes only what running jobs leave; the job itself competes as any job does."""
    from evaluators.harness import evaluate
    from sandbox.docker_backend import RUNNING_CPU_SHARES, WAITING_CPU_SHARES
    limits = Limits(wall_seconds=60, memory_mb=1024, cpus=1)
    worker = box.spawn(limits)
    try:
        assert worker._launched.wait(120) and worker.container is not None, worker.why_lost()
        starting = box.client.containers.get(worker.container.id).attrs["HostConfig"]
        assert starting["CpuShares"] == WAITING_CPU_SHARES == 2
        assert starting["NanoCpus"] == 1_000_000_000                      # its quota is the job's from the start
        done: dict = {}
        running = threading.Thread(target=lambda: done.update(result=evaluate(
            worker, job(tiny_spec, "weight-1", source="import time\ntime.sleep(4)\n" + MODEL), tmp_path / "w")))
        running.start()
        deadline = time.monotonic() + 120
        while not worker.channel.taken and running.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.channel.taken, worker.why_lost()
        during = box.client.containers.get(worker.container.id).attrs["HostConfig"]      # the job runs now
        running.join(120)
    finally:
        worker.discard()
    assert during["CpuShares"] == RUNNING_CPU_SHARES == 1024
    assert done["result"].status == "ok", done["result"].message


def test_a_warm_gpu_worker_without_the_nvidia_runtime_is_a_sandbox_error(box, tiny_spec, tmp_path):
    from evaluators.harness import evaluate
    from sandbox.warm import WarmSandbox
    if box.gpus.devices:
        pytest.skip("this machine has GPUs; the failure path needs a machine without the NVIDIA runtime")
    events = []
    warm = WarmSandbox(box, devices=("0",), on_event=lambda kind, **info: events.append(kind))
    try:
        result = evaluate(warm, job(tiny_spec, "warm-gpu-1", gpus=1), tmp_path / "g")
    finally:
        warm.close()
    assert result.status == "sandbox_error" and "NVIDIA container toolkit" in result.message, result.message
    assert events and set(events) == {"worker_replaced"}
    assert not ours(box.client)


def test_hidden_paths_are_covered_where_a_mount_brings_them_in(tmp_path):
    # what the containers get for hidden paths, without an engine: covers only under mounted trees, at the
    # container's path for them, a read-only tmpfs over a directory and an empty read-only file over a file
    from sandbox.docker_backend import hidden_mounts
    tree = tmp_path / "venv"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "corpus.txt").write_text("secret")
    (tree / "answers.txt").write_text("secret")
    (tree / "link.txt").symlink_to(tree / "answers.txt")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("secret")
    mounts = [Mount("/opt/venv", str(tree), type="bind", read_only=True),
              Mount("/job/out", str(tmp_path / "out"), type="bind", read_only=False)]
    hidden = [tree / "data", tree / "data" / "corpus.txt", tree / "link.txt", outside, tmp_path / "missing"]
    covers = {m["Target"]: m for m in hidden_mounts([str(p) for p in hidden], mounts)}
    # the link is covered where it leads; the file inside the covered directory is gone with it
    assert set(covers) == {"/opt/venv/data", "/opt/venv/answers.txt"}
    assert covers["/opt/venv/data"]["Type"] == "tmpfs" and covers["/opt/venv/data"]["ReadOnly"] is True
    empty = covers["/opt/venv/answers.txt"]
    assert empty["Type"] == "bind" and empty["ReadOnly"] is True
    assert Path(empty["Source"]).read_bytes() == b""
