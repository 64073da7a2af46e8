"""The process backend's fork path (`sandbox.zygote`): what one job leaves is invisible to the next, each job is in
its own namespaces and cgroup, a dead zygote is replaced, and without namespaces the fork path gives what the cold
exec path gives. The hostile and gaming suites run on the fork path too (`process-*` in their ids)."""
from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import under_ci

from evaluators.harness import evaluate
from sandbox import zygote
from sandbox.process import ProcessSandbox
from sandbox.warm import WarmSandbox
from tests import hostile_cases as cases
from wire.jobs import EvalJob, Limits

LIMITS = Limits(wall_seconds=60, memory_mb=2048, cpus=1)


@pytest.fixture
def marker():
    return f"archlab-zygote-{uuid.uuid4().hex[:10]}"


def _job(source: str, spec, name: str, limits: Limits = LIMITS) -> EvalJob:
    return EvalJob(job_id=f"{name}-{uuid.uuid4().hex[:6]}", candidate_id="c", source=source, task=spec,
                   fidelity="check", limits=limits)


def _lines(result) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.log_tail.splitlines() if ": " in line)


def _zygote_pid(sandbox: ProcessSandbox) -> int:
    return zygote.shared(sandbox.python, sandbox.zygote_env()).proc.pid


def _wait(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def fork_sandbox():
    sandbox = ProcessSandbox(start="fork")
    assert sandbox.start == "fork"
    return sandbox


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_what_a_job_leaves_is_invisible_to_the_next_job_from_the_same_zygote(fork_sandbox, tiny_spec, tmp_path,
                                                                             marker, mode):
    box = fork_sandbox if mode == "cold" else WarmSandbox(fork_sandbox)
    try:
        first = evaluate(box, _job(cases.LEAVE_TRACES.replace("MARKER", marker), tiny_spec, "leave"), tmp_path / "a")
        parent = _zygote_pid(fork_sandbox)
        second = evaluate(box, _job(cases.LOOK_FOR_TRACES.replace("MARKER", marker), tiny_spec, "look"),
                          tmp_path / "b")
    finally:
        if mode == "warm":
            box.close()
    assert first.status == "ok" and "left traces" in first.log_tail, (first.status, first.message, first.log_tail)
    assert second.status == "ok", (second.status, second.message, second.log_tail[-1000:])
    assert _zygote_pid(fork_sandbox) == parent                 # both jobs were forked from the one zygote
    seen = _lines(second)
    assert seen["global"] == "None"
    assert seen["dtype"] == "torch.float32"
    assert seen["env"] == "None"
    assert seen["files"] == "[]"
    assert seen["processes"] == "[]"
    assert marker not in second.log_tail
    # and on the host: job A's background process is gone, and its scratch with it
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]
    assert not list(Path("/tmp").glob(f"trace-{marker}"))


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path("/proc", pid, "cmdline").read_bytes()
    except OSError:
        return False


def test_a_forked_job_starts_from_its_own_random_state(fork_sandbox, tiny_spec, tmp_path, marker):
    """As a fresh interpreter's, seeded from the OS: not the zygote's warm-up seed (0), not a sibling's."""
    source = cases.LOOK_FOR_TRACES.replace("MARKER", marker)
    seeds = []
    for i in range(2):
        result = evaluate(fork_sandbox, _job(source, tiny_spec, f"rng{i}"), tmp_path / f"rng{i}")
        assert result.status == "ok", result.message
        seeds.append(_lines(result)["rng"])
    assert seeds[0] != seeds[1]
    assert not any(seed.startswith(("0 ", "1234 ")) for seed in seeds), seeds


def _needs(sandbox, capability: str) -> None:
    """Skip on a machine that declares it cannot give `capability`; under CI (which can) that is a failure."""
    if capability not in sandbox.capabilities:
        message = f"this machine gives process jobs no {capability} (declared)"
        if under_ci():
            pytest.fail(message + "; CI's machine must")
        pytest.skip(message)


def test_a_forked_job_is_in_its_own_pid_and_network_namespace_and_cgroup(fork_sandbox, tiny_spec, tmp_path):
    for capability in ("pid_namespace", "no_network", "readonly_root"):
        _needs(fork_sandbox, capability)
    warm = WarmSandbox(fork_sandbox)
    try:
        results = [evaluate(warm, _job(cases.SHOW_NAMESPACES, tiny_spec, f"ns{i}"), tmp_path / f"ns{i}")
                   for i in range(2)]
    finally:
        warm.close()
    seen = []
    for result in results:
        assert result.status == "ok", (result.status, result.message, result.log_tail[-1000:])
        seen.append(_lines(result))
    for name in ("pid", "net", "mnt"):
        host = os.readlink(f"/proc/self/ns/{name}")
        zygote_ns = os.readlink(f"/proc/{_zygote_pid(fork_sandbox)}/ns/{name}")
        assert host == zygote_ns                                  # the zygote itself is the host's
        assert seen[0][f"ns {name}"] != host and seen[1][f"ns {name}"] != host, (name, seen)
        assert seen[0][f"ns {name}"] != seen[1][f"ns {name}"]     # and each job has its own
    for lines in seen:
        pid, parent = re.match(r"(\d+) parent: (\d+)", lines["pid"]).groups()
        assert parent == "1"                                      # its supervisor is PID 1 of the namespace
        assert int(pid) < 10                                      # nothing else lives in it
        assert "NoNewPrivs:\t1" in lines["status"] or "NoNewPrivs: 1" in lines["status"].replace("\t", " ")
        caps = dict(re.findall(r"(Cap\w+):\s+([0-9a-f]+)", lines["status"]))
        assert set(caps.values()) == {"0000000000000000"}, caps  # every capability dropped
    if os.geteuid() == 0 and "memory_limit" in fork_sandbox.capabilities:
        groups = [set(re.findall(r"/(archlab-[\w-]+)", lines["cgroup"])) for lines in seen]
        assert all(groups), seen                                  # in its job's groups (pids, memory, cpu)
        assert not groups[0] & groups[1]                          # each job its own
        assert "archlab-" not in Path(f"/proc/{_zygote_pid(fork_sandbox)}/cgroup").read_text()


def test_a_job_cannot_see_or_signal_the_zygote(fork_sandbox, tiny_spec, tmp_path):
    _needs(fork_sandbox, "pid_namespace")
    evaluate(fork_sandbox, _job(cases.MODEL, tiny_spec, "start"), tmp_path / "start")    # the zygote is up
    parent = _zygote_pid(fork_sandbox)
    result = evaluate(fork_sandbox, _job(cases.ATTACK_SIBLINGS.replace("TARGETS", repr([parent])), tiny_spec,
                                         "attack"), tmp_path / "attack")
    assert result.status == "ok", result.message
    assert "signal refused" in result.log_tail and "read refused" in result.log_tail, result.log_tail[-1000:]
    assert _zygote_pid(fork_sandbox) == parent and zygote.shared(fork_sandbox.python,
                                                                 fork_sandbox.zygote_env()).alive()


def test_a_dead_zygote_is_replaced_and_the_job_runs_once(fork_sandbox, tiny_spec, tmp_path):
    events: list = []
    warm = WarmSandbox(fork_sandbox, on_event=lambda kind, **info: events.append((kind, info)))
    try:
        assert warm.wait_ready(LIMITS, 120)
        waiting = warm.idle(LIMITS)
        old = _zygote_pid(fork_sandbox)
        os.kill(old, signal.SIGKILL)                              # the zygote dies; its waiting child with it
        assert _wait(lambda: not waiting.alive(), 30), "the zygote's child outlived it"
        job = _job(cases.RAN_ONCE, tiny_spec, "after-zygote")
        result = evaluate(warm, job, tmp_path / "job")
    finally:
        warm.close()
    assert result.status == "ok", (result.status, result.message, result.log_tail[-1000:])
    assert [kind for kind, _ in events] == ["worker_replaced"], events
    assert "died" in events[0][1]["reason"], events
    assert _zygote_pid(fork_sandbox) != old                       # a fresh zygote forked the job
    assert len(list((tmp_path / "job" / "out").glob("ran-*"))) == 1
    assert result.log_tail.count("candidate ran") == 1


def test_without_namespaces_the_fork_path_gives_what_the_cold_path_gives(monkeypatch, tiny_spec, tmp_path):
    from sandbox import process
    monkeypatch.setattr(process, "namespace_prefix", lambda: ())
    monkeypatch.setattr(process, "confinement_works", lambda: False)
    forked, cold = ProcessSandbox(start="fork"), ProcessSandbox(start="exec")
    assert forked.capabilities == cold.capabilities
    assert not {"no_network", "pid_namespace", "readonly_root", "hidden_home", "hidden_paths"} & forked.capabilities
    seen = {}
    for name, sandbox in (("fork", forked), ("exec", cold)):
        result = evaluate(sandbox, _job(cases.SHOW_NAMESPACES + cases.NETWORK, tiny_spec, name), tmp_path / name)
        assert result.status == "ok", (name, result.message, result.log_tail[-1000:])
        seen[name] = _lines(result)
    for lines in seen.values():
        assert lines["ns pid"] == os.readlink("/proc/self/ns/pid")   # the host's, as the cold path's here
        assert lines["ns net"] == os.readlink("/proc/self/ns/net")
        assert not lines["pid"].startswith(("1 ", "2 "))
    assert seen["fork"]["interfaces"] == seen["exec"]["interfaces"]
    hidden = Limits(wall_seconds=60, memory_mb=2048, cpus=1, hidden_paths=("/etc/hostname",))
    refused = evaluate(forked, _job(cases.MODEL, tiny_spec, "hidden", hidden), tmp_path / "hidden")
    assert refused.status == "sandbox_error" and "cannot confine" in refused.message


def test_the_zygote_never_initialises_cuda_and_holds_no_secret(fork_sandbox, tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-zygote-secret")
    evaluate(fork_sandbox, _job(cases.MODEL, tiny_spec, "up"), tmp_path / "up")
    pid = _zygote_pid(fork_sandbox)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert names <= {"PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "PYTHONPATH",
                     "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LC_CTYPE"}
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libcuda" not in maps                                  # no CUDA context: a forked child could not use it
    assert len(os.listdir(f"/proc/{pid}/task")) == 1              # one thread: a fork copies no held lock
