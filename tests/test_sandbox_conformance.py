"""One conformance suite for every sandbox backend, cold and warm: hostile candidates are contained and classified.

Each case runs on every backend (`process`, forked from its zygote as by default; `process-exec`,
a fresh interpreter per job; `docker`) in both modes: `cold` (the backend's own `run`, a sandbox
started per job) and `warm` (a `sandbox.warm.WarmSandbox` around it, whose jobs run on
pre-spawned one-shot workers). Warm sandboxes are shared by the whole session, so their
workers are reused across cases as an executor would. Each backend declares its capabilities;
a case that needs one the backend lacks is skipped with the reason (the process backend cannot
hide the host filesystem where namespaces are missing, Docker can). The cases that prove
containment assert that the intended limit is what stopped the job, not only that it failed.
"""
from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from evaluators.harness import evaluate
from tests import hostile_cases as cases
from wire.jobs import EvalJob, Limits

BACKENDS = ("process", "process-exec", "docker")     # process: the default start, forked from the zygote


def _marks(backend: str) -> list:
    return [pytest.mark.docker] if backend == "docker" else []


def _modes():
    return [pytest.param((backend, mode), id=f"{backend}-{mode}", marks=_marks(backend))
            for backend in BACKENDS for mode in ("cold", "warm")]


def _backend_params():
    return [pytest.param(backend, id=backend, marks=_marks(backend)) for backend in BACKENDS]


@pytest.fixture(scope="session")
def docker_backend():
    from tests.docker_support import docker_sandbox_or_skip
    return docker_sandbox_or_skip()


@pytest.fixture(scope="session")
def exec_sandbox():
    from sandbox.process import ProcessSandbox
    return ProcessSandbox(start="exec")


def backend_of(request, name: str):
    fixture = {"process": "process_sandbox", "process-exec": "exec_sandbox", "docker": "docker_backend"}[name]
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def warm_sandboxes():
    """The session's shared WarmSandboxes by (backend, index); each records its events in `.events`."""
    made: dict = {}
    yield made
    for sandbox in made.values():
        sandbox.close()


def warm_of(request, name: str, index: int = 0):
    from sandbox.warm import WarmSandbox
    made = request.getfixturevalue("warm_sandboxes")
    if (name, index) not in made:
        events: list = []
        sandbox = WarmSandbox(backend_of(request, name), on_event=lambda kind, **info: events.append((kind, info)))
        sandbox.events = events
        made[name, index] = sandbox
    return made[name, index]


@pytest.fixture(params=_modes())
def sandbox(request):
    name, mode = request.param
    return backend_of(request, name) if mode == "cold" else warm_of(request, name)


@pytest.fixture
def sibling(request, sandbox):
    """A second sandbox of the same kind for a job that runs beside the first one (another executor slot)."""
    name, mode = request.node.callspec.params["sandbox"]
    return backend_of(request, name) if mode == "cold" else warm_of(request, name, 1)


def is_warm(sandbox) -> bool:
    return hasattr(sandbox, "prestart")


def needs(sandbox, capability: str) -> None:
    if capability not in getattr(sandbox, "capabilities", frozenset()):
        pytest.skip(f"the {sandbox.name} backend does not provide {capability} here (declared)")


def leftovers(marker: str) -> list[int]:
    """Processes on this machine whose command line carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def wait_until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def marker():
    return f"archlab-hostile-{uuid.uuid4().hex[:10]}"


def in_background(fn) -> tuple[threading.Thread, dict]:
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(result=fn()), daemon=True)
    thread.start()
    return thread, done


def test_well_behaved_candidate_is_ok(run_source, sandbox):
    result = run_source(cases.MODEL, sandbox=sandbox)
    assert result.status == "ok", result.message + result.log_tail


def test_fork_bomb_is_stopped_by_the_pid_limit(run_source, sandbox, marker):
    needs(sandbox, "pid_limit")
    wall = 30
    result = run_source(cases.FORK_BOMB.replace("MARKER", marker).replace("HOLD_SECONDS", "0"), sandbox=sandbox,
                        wall_seconds=wall, pids=64)
    assert result.status == "error", (result.status, result.message, result.log_tail[-500:])
    found = re.search(r"fork refused after (\d+) children", result.message)
    assert found, result.message
    assert 0 < int(found.group(1)) < 64                       # the limit, not memory or the machine, refused
    assert result.timings["wall_seconds"] < wall / 2           # stopped by the pid limit, long before the wall clock
    assert not leftovers(marker)


def test_fork_bomb_beside_a_job_does_not_starve_it(run_source, sandbox, sibling, marker):
    needs(sandbox, "pid_limit")
    normal_marker = f"{marker}-normal"
    # the normal job starts first and waits on a helper process until the bomb holds every pid it may have
    normal_thread, normal = in_background(lambda: run_source(
        cases.BESIDE_A_BOMB.replace("MARKER", normal_marker), sandbox=sibling, wall_seconds=120))
    assert wait_until(lambda: leftovers(normal_marker), 120), "the normal job never started"
    bomb = cases.FORK_BOMB.replace("MARKER", marker).replace("HOLD_SECONDS", "10")
    bomb_thread, bombed = in_background(lambda: run_source(bomb, sandbox=sandbox, wall_seconds=60, pids=64))
    assert wait_until(lambda: len(leftovers(marker)) >= 20 or not bomb_thread.is_alive(), 120)
    assert bomb_thread.is_alive(), "the bomb ended before it held its pids: nothing was tested"
    for pid in leftovers(normal_marker):           # now let the normal job go on: it must still start a process
        os.kill(pid, signal.SIGKILL)
    normal_thread.join(timeout=120)
    still_bombing = bomb_thread.is_alive()
    bomb_thread.join(timeout=120)
    assert normal["result"].status == "ok", (normal["result"].status, normal["result"].message)
    assert "spawned while the bomb held" in normal["result"].log_tail
    assert still_bombing, "the bomb ended before the normal job did: nothing was tested"
    assert bombed["result"].status == "error" and "fork refused after" in bombed["result"].message, \
        bombed["result"].message
    assert not leftovers(marker)


def test_memory_bomb_is_oom(run_source, sandbox):
    result = run_source(cases.MEMORY_BOMB, sandbox=sandbox, memory_mb=512, wall_seconds=30)
    assert result.status == "oom", (result.status, result.message, result.log_tail[-500:])
    assert "memory" in result.message


def test_memory_is_capped_at_the_configured_limit(run_source, sandbox):
    needs(sandbox, "memory_limit")
    result = run_source(cases.MEMORY_RAMP, sandbox=sandbox, memory_mb=512, wall_seconds=60)
    assert result.status == "oom", (result.status, result.message, result.log_tail[-500:])
    assert "512 MB memory limit" in result.message
    resident = [int(mb) for mb in re.findall(r"^resident (\d+)$", result.log_tail, re.M)]
    assert resident, result.log_tail[-500:]
    assert max(resident) <= 512                                # never more than configured, whatever else allows


def test_infinite_loop_times_out(run_source, sandbox):
    result = run_source(cases.INFINITE_LOOP, sandbox=sandbox, wall_seconds=4)
    assert result.status == "timeout"
    assert "wall-clock limit" in result.message or "CPU" in result.message


def test_sleep_past_timeout_is_killed_on_time(run_source, sandbox):
    result = run_source(cases.SLEEP_PAST_TIMEOUT, sandbox=sandbox, wall_seconds=3)
    assert result.status == "timeout"
    assert result.timings["wall_seconds"] < 30


def test_writes_outside_the_output_directory_fail(run_source, sandbox, tmp_path, marker):
    needs(sandbox, "readonly_root")
    escape = tmp_path / f"escape-{marker}"
    result = run_source(cases.WRITE_OUTSIDE.replace("ESCAPE_PATH", str(escape)).replace("MARKER", marker),
                        sandbox=sandbox)
    assert result.status == "ok", result.message
    assert not escape.exists()
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or not path.read_bytes().startswith(b"pwned")
    assert "refused" in result.log_tail


def test_host_home_is_not_readable(run_source, sandbox, marker):
    needs(sandbox, "hidden_home")
    secret = Path.home() / f".archlab-secret-{marker}"
    secret.write_text(f"top-secret-{marker}")
    try:
        result = run_source(cases.READ_HOME.replace("SECRET_PATH", str(secret)), sandbox=sandbox)
    finally:
        secret.unlink()
    assert result.status == "ok", (result.status, result.message)   # it ran, so it tried
    assert "refused" in result.log_tail                               # and the read failed
    assert f"top-secret-{marker}" not in result.log_tail + result.message


def test_environment_secrets_do_not_reach_the_candidate(run_source, sandbox, monkeypatch, marker):
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-{marker}")
    monkeypatch.setenv("GITHUB_TOKEN", f"ghp-{marker}")
    result = run_source(cases.READ_ENV, sandbox=sandbox)
    assert result.status == "ok", result.message
    assert "environment:" in result.log_tail
    assert marker not in result.log_tail


def test_only_loopback_network_exists(run_source, sandbox):
    needs(sandbox, "no_network")
    result = run_source(cases.NETWORK, sandbox=sandbox)
    assert result.status == "ok", result.message
    line = next(l for l in result.log_tail.splitlines() if l.startswith("interfaces:"))
    assert line == "interfaces: ['lo']" or line == "interfaces: []"


def test_stdout_flood_is_bounded(run_source, sandbox):
    result = run_source(cases.FLOOD_STDOUT, sandbox=sandbox, wall_seconds=60)
    assert result.status == "ok", result.message
    assert len(result.log_tail) < 20_000
    assert "earlier bytes dropped" in result.log_tail


def test_background_process_does_not_outlive_the_job(run_source, sandbox, marker):
    result = run_source(cases.BACKGROUND.replace("MARKER", marker), sandbox=sandbox)
    assert result.status == "ok", result.message
    assert not leftovers(marker)


def test_filling_the_scratch_disk_is_stopped(run_source, sandbox):
    result = run_source(cases.FILL_DISK, sandbox=sandbox, file_size_mb=64)
    assert result.status == "error"
    assert "SIGXFSZ" in result.message or "No space" in result.message or "File too large" in result.message


def test_segfault_is_a_classified_error(run_source, sandbox):
    result = run_source(cases.SEGFAULT, sandbox=sandbox)
    assert result.status == "error"
    assert "SIGSEGV" in result.message


def test_forged_report_does_not_change_the_score(run_source, sandbox):
    result = run_source(cases.FORGED_REPORT, fidelity="short", sandbox=sandbox)
    assert result.status == "ok", result.message
    assert result.metrics["accuracy"] < 0.6          # an embedding-only model cannot recall
    assert result.metrics["params"] > 1000            # the runner's own count, not the forged 1.0


# --- resources enforced, paths hidden ------------------------------------------------------------
HOG_SECONDS = 4


def test_more_threads_buy_no_more_cpu_than_the_job_was_given(run_source, sandbox):
    needs(sandbox, "cpu_quota")
    result = run_source(cases.CPU_HOG.replace("SECONDS", str(HOG_SECONDS)), sandbox=sandbox, cpus=1, wall_seconds=90)
    assert result.status == "ok", (result.status, result.message, result.log_tail[-1000:])
    used = float(re.search(r"^cpu per wall ([\d.]+)$", result.log_tail, re.M).group(1))
    seen = re.search(r"^quota (.*)$", result.log_tail, re.M).group(1)
    assert used <= 1.2, f"12 busy threads got {used:.2f} CPU-seconds per wall second on cpus=1"
    assert seen != "unlimited" and float(seen) <= 1.0, f"the job sees a CPU quota of {seen}, not its cpus=1"


@pytest.fixture
def hidden(marker):
    """A file and a directory beside an unhidden control file, inside the virtual environment (readable in every
    backend: process jobs keep it, docker mounts it), removed afterwards."""
    import shutil
    import sys
    root = Path(sys.prefix) / f".archlab-hidden-{marker}"
    (root / "dir").mkdir(parents=True)
    (root / "secret.txt").write_text(f"file-secret-{marker}")
    (root / "dir" / "inner.txt").write_text(f"dir-secret-{marker}")
    (root / "control.txt").write_text(f"control-{marker}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def read_hidden_source(root: Path) -> str:
    return (cases.READ_HIDDEN.replace("FILE", str(root / "secret.txt")).replace("DIR", str(root / "dir"))
            .replace("CONTROL", str(root / "control.txt")))


def assert_hidden(result, marker: str) -> None:
    assert result.status == "ok", (result.status, result.message, result.log_tail[-1000:])
    assert f"control: read 'control-{marker}'" in result.log_tail      # the tree is readable, so it tried
    assert f"secret-{marker}" not in result.log_tail + result.message
    lines = dict(line.split(": ", 1) for line in result.log_tail.splitlines() if ": " in line)
    for name in ("file", "file via /proc/self/root", "file via symlink"):
        assert lines[name] in ("read ''", "refused FileNotFoundError", "refused PermissionError"), (name, lines[name])
    for name in ("file in dir", "dir via /proc/self/root", "dir via symlink"):
        assert lines[name].startswith("refused"), (name, lines[name])
    assert lines["dir listing"] in ("[]", "refused FileNotFoundError"), lines["dir listing"]


def test_hidden_paths_cannot_be_read(run_source, sandbox, hidden, marker):
    needs(sandbox, "hidden_paths")
    # the file inside the hidden directory is named too: a cover under a cover must not stop the job from starting
    result = run_source(read_hidden_source(hidden), sandbox=sandbox,
                        hidden_paths=(str(hidden / "secret.txt"), str(hidden / "dir"), str(hidden / "dir" / "inner.txt")))
    assert_hidden(result, marker)


def test_a_hidden_path_that_holds_the_interpreter_is_refused(run_source, sandbox):
    import sys
    needs(sandbox, "hidden_paths")
    result = run_source(cases.MODEL, sandbox=sandbox, hidden_paths=(str(Path(sys.prefix).parent),))
    assert result.status == "sandbox_error", (result.status, result.message)
    assert "needs to run" in result.message and "hide the files inside it" in result.message


def test_a_hidden_path_made_or_replaced_after_a_worker_started_is_still_hidden(backend, tiny_spec, tmp_path, marker):
    from sandbox.warm import WarmSandbox
    needs(backend, "hidden_paths")
    import sys
    root = Path(sys.prefix) / f".archlab-hidden-{marker}"
    root.mkdir()
    (root / "control.txt").write_text(f"control-{marker}")
    (root / "dir").mkdir()
    (root / "dir" / "inner.txt").write_text(f"dir-secret-{marker}")
    events: list = []
    warm = WarmSandbox(backend, on_event=lambda kind, **info: events.append((kind, info)))
    limits = Limits(wall_seconds=60, memory_mb=2048, cpus=1,
                    hidden_paths=(str(root / "secret.txt"), str(root / "dir")))
    try:
        assert warm.wait_ready(limits, 120)                       # started while secret.txt did not exist
        (root / "secret.txt").write_text(f"file-secret-{marker}")
        replacement = root / "dir.new"                            # and the directory is replaced by a rename
        replacement.mkdir()
        (replacement / "inner.txt").write_text(f"dir-secret-{marker}")
        (root / "dir").rename(root / "dir.old")
        replacement.rename(root / "dir")
        job = EvalJob(job_id="hidden-late-1", candidate_id="c", source=read_hidden_source(root), task=tiny_spec,
                      fidelity="check", limits=limits)
        result = evaluate(warm, job, tmp_path / "job")
    finally:
        warm.close()
        import shutil
        shutil.rmtree(root, ignore_errors=True)
    assert_hidden(result, marker)
    assert [kind for kind, _ in events] == ["worker_replaced"], events
    assert "hidden path" in events[0][1]["reason"], events


# --- siblings: jobs and workers side by side -------------------------------------------------
OTHER_PROFILE = {"pids": 200}     # limits for a waiting worker that is not the attacking job's


def test_a_job_cannot_signal_or_read_its_siblings(run_source, sandbox, sibling, marker):
    needs(sandbox, "pid_namespace")
    waiting, targets = None, []
    if is_warm(sandbox):                                          # a worker waiting for its job
        other = Limits(wall_seconds=60, memory_mb=2048, cpus=1, **OTHER_PROFILE)
        assert sandbox.wait_ready(other, 120)
        waiting = sandbox.idle(other)
        targets += waiting.host_pids()
    thread, done = in_background(lambda: run_source(cases.SIBLING.replace("MARKER", marker), sandbox=sibling))
    assert wait_until(lambda: leftovers(marker), 120), "the sibling job never started its helper"
    helpers = leftovers(marker)
    targets += helpers                                            # and a job running beside this one
    result = run_source(cases.ATTACK_SIBLINGS.replace("TARGETS", repr(targets)), sandbox=sandbox)
    for pid in helpers:                                           # the sibling may finish now
        os.kill(pid, signal.SIGTERM)
    thread.join(timeout=90)
    assert result.status == "ok", result.message
    assert result.log_tail.count("signal refused") == len(targets), result.log_tail[-2000:]
    assert result.log_tail.count("read refused") == len(targets), result.log_tail[-2000:]
    visible = re.search(r"^visible: \[(.*)\]$", result.log_tail, re.M).group(1)
    assert not set(targets) & {int(p) for p in visible.split(",") if p.strip()}
    assert done["result"].status == "ok", done["result"].message   # the sibling finished untouched
    assert "sibling helper finished" in done["result"].log_tail
    if waiting is not None:
        assert waiting.alive() and sandbox.idle(other) is waiting
        again = run_source(cases.MODEL, sandbox=sandbox, **OTHER_PROFILE)
        assert again.status == "ok", again.message
        assert sandbox.idle(other) is not waiting                 # that very worker took the job


@pytest.fixture(params=_backend_params())
def backend(request):
    return backend_of(request, request.param)


def test_a_worker_killed_while_waiting_is_replaced_and_the_job_runs_once(backend, tiny_spec, tmp_path):
    from sandbox.warm import WarmSandbox
    events: list = []
    warm = WarmSandbox(backend, on_event=lambda kind, **info: events.append((kind, info)))
    limits = Limits(wall_seconds=60, memory_mb=2048, cpus=1)
    try:
        assert warm.wait_ready(limits, 120)
        victim = warm.idle(limits)
        for pid in victim.host_pids():
            try:
                os.kill(pid, signal.SIGKILL)                      # from outside, while it waits
            except ProcessLookupError:
                pass
        assert wait_until(lambda: not victim.alive(), 30)
        job = EvalJob(job_id="killed-waiting-1", candidate_id="c", source=cases.RAN_ONCE, task=tiny_spec,
                      fidelity="check", limits=limits)
        result = evaluate(warm, job, tmp_path / "job")
    finally:
        warm.close()
    assert result.status == "ok", (result.status, result.message)
    assert [kind for kind, _ in events] == ["worker_replaced"], events
    assert events[0][1]["job_id"] == job.job_id and "died" in events[0][1]["reason"], events
    assert len(list((tmp_path / "job" / "out").glob("ran-*"))) == 1
    assert result.log_tail.count("candidate ran") == 1


def test_a_worker_refuses_a_job_of_another_profile(backend, tiny_spec, tmp_path):
    worker = backend.spawn(Limits(wall_seconds=60, memory_mb=2048, cpus=1))
    try:
        other = EvalJob(job_id="profile-1", candidate_id="c", source=cases.MODEL, task=tiny_spec, fidelity="check",
                        limits=Limits(wall_seconds=60, memory_mb=1024, cpus=1))
        with pytest.raises(ValueError, match="only wall_seconds may differ"):
            worker.run(other, tmp_path)
    finally:
        worker.discard()
    assert not worker.alive()


def test_a_warm_worker_sees_exactly_its_devices(backend, tiny_spec, tmp_path):
    if backend.name == "docker":
        pytest.skip("docker hands GPUs over as device requests, which need GPUs and the NVIDIA runtime "
                    "(see tests/e2e/test_docker_backend.py)")
    limits = Limits(wall_seconds=60, memory_mb=2048, cpus=1)
    workers = {devices: backend.spawn(limits, devices) for devices in ((), ("0",), ("1", "3"))}
    seen = {}
    try:
        for devices, worker in workers.items():
            job = EvalJob(job_id=f"devices-{len(devices)}", candidate_id="c", source=cases.SHOW_DEVICES,
                          task=tiny_spec, fidelity="check", limits=limits)
            result = evaluate(worker, job, tmp_path / job.job_id)
            assert result.status == "ok", result.message
            seen[devices] = re.search(r"^devices: (.*)$", result.log_tail, re.M).group(1)
    finally:
        for worker in workers.values():
            worker.discard()
    assert seen == {(): "''", ("0",): "'0'", ("1", "3"): "'1,3'"}


# --- decoding procedures (the `decode` task): bad techniques are classified, the shared model stays unchanged --
# They exercise the decode runner and the host's judge on each backend's cold sandbox (the warm path runs the same
# runner; the generic cases above cover its containment).
@pytest.fixture(scope="module")
def decode_spec():
    from tests.decode_support import decode_spec
    return decode_spec()


@pytest.fixture
def run_decode(decode_spec, tmp_path):
    from tests.decode_support import run_decode

    def run(source: str, sandbox, fidelity: str = "check", **limits):
        return run_decode(decode_spec, source, sandbox, tmp_path, fidelity, **limits)
    return run


def _weights_unchanged(decode_spec, tmp_path) -> None:
    """Every job's weights file still hashes to the spec's model: nothing changed the shared model."""
    import numpy as np

    from evaluators.decoding import array_digest
    files = list(tmp_path.glob("*/inputs/train_weights.npy"))
    assert files
    assert all(array_digest(np.load(f)) == decode_spec.data["weights_sha256"] for f in files)


def test_decode_greedy_procedure_is_ok_and_exact(run_decode, backend):
    result = run_decode(cases.DECODE_GREEDY, backend)
    assert result.status == "ok", result.message + result.log_tail
    assert result.metrics["exact_match"] == 1.0


def test_decode_wrong_length_is_invalid(run_decode, backend):
    result = run_decode(cases.DECODE_WRONG_LENGTH, backend)
    assert result.status == "invalid"
    assert "exactly max_new_tokens new ids" in result.message


def test_decode_wrong_dtype_is_invalid(run_decode, backend):
    result = run_decode(cases.DECODE_WRONG_DTYPE, backend)
    assert result.status == "invalid"
    assert "torch.int32" in result.message and "torch.long" in result.message


def test_decode_infinite_loop_times_out(run_decode, backend):
    result = run_decode(cases.DECODE_INFINITE_LOOP, backend, wall_seconds=8)
    assert result.status == "timeout", result.message


def test_decode_unbounded_allocation_is_oom(run_decode, backend):
    result = run_decode(cases.DECODE_MEMORY_BOMB, backend)
    assert result.status == "oom", result.message


def test_decode_model_mutation_fails_and_the_model_is_unchanged(run_decode, backend, decode_spec, tmp_path):
    result = run_decode(cases.DECODE_MUTATES_MODEL, backend)
    assert result.status == "invalid"
    assert "changed the model's weights" in result.message and "work on a copy" in result.message
    _weights_unchanged(decode_spec, tmp_path)


def test_decode_reference_output_is_out_of_reach(run_decode, backend, tmp_path):
    result = run_decode(cases.DECODE_READS_REFERENCE, backend, fidelity="short")
    assert result.status == "ok", result.message + result.log_tail
    first = re.search(r"stolen (True|False)", result.log_tail).group(1)
    assert first == "False"                      # the first call found nothing (later ones find only its own zeros)
    assert result.metrics["exact_match"] < 0.2
    inputs = {p.name for p in next(tmp_path.glob("*/inputs")).iterdir()}
    assert inputs == {"candidate.py", "prompts.npy", "train_weights.npy"}


def test_decode_patched_timer_is_refused(run_decode, backend):
    result = run_decode(cases.DECODE_PATCHES_TIMER, backend, fidelity="short")
    assert result.status == "invalid"
    assert "replaced time.perf_counter" in result.message
