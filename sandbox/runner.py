"""The in-sandbox runner: loads one candidate, runs one fidelity, writes a report.

Invoked as `python -m sandbox.runner JOB_JSON INPUTS_DIR OUT_DIR` by every backend (a child
process or a container). It imports only `evaluators`, `wire` and the standard library. Every fidelity
runs `check` first; then `check` and `proxy` add the functional hash (`evaluators.funchash`),
`proxy` the zero-cost proxies (`evaluators.proxies`), `bench` latency and memory
(`evaluators.bench`), and `short`/`full` train. It writes `OUT_DIR/report.json` (status,
metrics, message, environment, functional hash) and, for training fidelities,
`OUT_DIR/predictions.npy` (raw model outputs on held-out inputs). What a job does is the
task's (`Task.run_in_sandbox`): a model's fidelities by default (`evaluators.model_job.
run_model_job`); decode's is a procedure around a fixed model (`evaluators.decoding_job`),
where the runner's own process never runs candidate code. Nothing it writes is trusted: the
host validates the report's schema and ranges and
computes quality metrics from the predictions itself.

Warm mode, `python -m sandbox.runner --warm SLOT_JOB OUT GO READY [--cuda]`, is a one-shot
worker started before its job exists (the protocol is in `sandbox.handoff`). It forks at once:
- the **supervisor** (this process; PID 1 of the worker's PID namespace, so nothing inside can
  signal it) never imports torch or the candidate. It learns the job's wall clock from the job
  process right after the handoff, SIGKILLs everything in the namespace once that and a grace
  period have passed (the host normally ends the job first), and exits with the job process's
  status (128 + N for death by signal N), so the host classifies it like a cold runner's.
- the **job process** imports what `main` needs (torch, numpy, evaluators; with `--cuda` it also
  creates the CUDA context), says "ready", waits for "go", reads `SLOT_JOB/job.json`, lowers its
  CPU-seconds limit to the job's own budget when the backend set one, tells the supervisor the
  wall clock, says "taken", closes both channels and only then runs `main` — the same code, the
  same argv shape, as a cold runner. It runs exactly one job and exits.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
import traceback
from pathlib import Path

# bound before the candidate is imported, so a candidate that patches json.dumps or the timer
# does not change what the runner writes (the host still trusts none of it beyond validation)
_dumps = json.dumps
_clock = time.perf_counter
_replace = os.replace

TRACE_CHARS = 3000  # traceback tail kept in a report
GRACE_SECONDS = 5   # the supervisor kills a warm job this long after its wall clock (the host acts first)


def _candidate_trace(exc: BaseException) -> str:
    """The traceback, trimmed to the frames a coder can fix plus the error line."""
    lines = traceback.format_exception(exc)
    text = "".join(lines)
    if "candidate.py" in text:
        frames = [ln for ln in lines[1:] if "candidate.py" in ln]
        text = "".join(frames[-4:]) + lines[-1]
    return text[-TRACE_CHARS:]


def _write_report(out: Path, report: dict) -> None:
    tmp = out / "report.json.tmp"
    tmp.write_text(_dumps(report))
    _replace(tmp, out / "report.json")


def main(job_path: str, inputs_dir: str, out_dir: str) -> int:
    import numpy as np
    import torch

    from evaluators import fidelities
    from evaluators.tasks import task_in_job
    from wire.task import TaskSpec

    out = Path(out_dir)
    job = json.loads(Path(job_path).read_text())
    spec = TaskSpec.model_validate(job["task"])
    fidelity = job["fidelity"]
    seed = int(job.get("seed", 0))
    limits = job.get("limits", {})
    torch.set_num_threads(max(1, int(limits.get("cpus", 1))))
    use_cuda = int(limits.get("gpus", 0)) > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    environment = {"device": str(device), "torch": torch.__version__, "python": sys.version.split()[0]}
    if use_cuda:
        environment["gpu_name"] = torch.cuda.get_device_name(0)
    report: dict = {"status": "ok", "metrics": {}, "message": "", "environment": environment, "curve": []}
    task = task_in_job(spec, Path(inputs_dir))
    files = {p.stem.removeprefix("train_"): np.load(p, allow_pickle=False)
             for p in sorted(Path(inputs_dir).glob("train_*.npy"))}
    task.attach(spec, files)   # training data the host wrote (a corpus, a dataset); none for generated tasks
    started = _clock()
    try:
        try:        # what one job does is the task's (`Task.run_in_sandbox`): a model's fidelities by default
            output = task.run_in_sandbox(spec, fidelity, seed, Path(inputs_dir), out, files, device, _clock)
        except fidelities.JobFailure as exc:       # a rule the candidate broke, as the task classified it
            report.update(status=exc.status, message=exc.message, traceback=exc.trace)
        else:
            report["metrics"].update(output.metrics)
            environment.update(output.environment)
            report["curve"] = output.curve
            if output.functional_hash is not None:
                report["functional_hash"] = output.functional_hash
            if output.predictions is not None:
                np.save(out / "predictions.npy", output.predictions, allow_pickle=False)
    except fidelities.ContractViolation as exc:
        report.update(status="invalid", message=str(exc))
    except fidelities.Diverged as exc:
        report.update(status="error", message=str(exc))
    except SyntaxError as exc:
        report.update(status="invalid", message=f"syntax error at line {exc.lineno}: {exc.msg}: {exc.text or ''}".strip())
    except MemoryError:
        report.update(status="oom", message="the candidate ran out of memory (MemoryError); use a smaller model, "
                                            "shorter intermediate tensors, or chunk the computation")
    except Exception as exc:  # noqa: BLE001 - any candidate failure becomes a classified report
        text = str(exc)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            report.update(status="oom", message=f"the candidate ran out of memory: {text[:300]}; "
                                                "use a smaller model or chunk the computation")
        else:
            report.update(status="error", message=f"{type(exc).__name__}: {text[:500]}")
        report["traceback"] = _candidate_trace(exc)
    report["timings"] = {"runner_seconds": _clock() - started}
    _write_report(out, report)
    return 0


# --- warm mode -----------------------------------------------------------------------
_preloaded: set[str] = set()     # devices warmed up in this process (a zygote's children inherit its "cpu")


def _preload(cuda: bool) -> None:
    """Everything `main` imports, and its first-call costs, paid before the job is known.

    `check` on a tiny trusted model pulls in what torch imports lazily on first use (the FLOP
    counter alone is some 800 modules, about a second); nothing of it outlives the call but
    loaded modules and warmed caches, and every job seeds its own RNG in `fidelities.build`.
    Each device is warmed once per process: a child forked from the zygote (`sandbox.zygote`)
    has the CPU warm-up already and pays only for the CUDA context."""
    import types

    import numpy  # noqa: F401
    import torch

    from evaluators import bench, decoding_job, fidelities, funchash, proxies  # noqa: F401
    from evaluators.tasks import get_task
    from wire.task import TaskSpec  # noqa: F401
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    task = get_task("mqar")
    spec = task.default_spec(seq_len=16, num_pairs=2, num_queries=2)
    tiny = types.ModuleType("archlab_warmup")
    tiny.build_model = lambda s: torch.nn.Sequential(torch.nn.Embedding(s.vocab_size, 16),
                                                     torch.nn.Linear(16, s.vocab_size))
    devices = [] if "cpu" in _preloaded else [torch.device("cpu")]
    try:
        if cuda and "cuda" not in _preloaded and torch.cuda.is_available():
            torch.zeros(1, device="cuda")           # the CUDA context, the largest start-up cost on a GPU
            devices.append(torch.device("cuda"))
    except RuntimeError:                            # the job meets the same error, and reports it, as a cold one
        pass
    for device in devices:
        _preloaded.add(device.type)
        try:
            fidelities.check(task, spec, fidelities.build(tiny, spec, 0).to(device), device)
            funchash.functional_hash(tiny, task, spec, device)
            # two steps of training: the optimiser pulls in torch._dynamo (about two CPU-seconds) on first use
            fidelities.train(task, spec, fidelities.build(tiny, spec, 0).to(device), spec.budgets["short"].model_copy(
                update={"steps": 2}), 0, device)
        except fidelities.ContractViolation:
            pass


def _channel(spec: str, flags: int) -> int:
    """An inherited descriptor (`fd:N`, process backend) or a FIFO in the slot (a path, docker)."""
    return int(spec[3:]) if spec.startswith("fd:") else os.open(spec, flags)


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data


def _lower_cpu_limit(limits: dict) -> None:
    """Give the job the CPU seconds a cold runner gets (wall x cpus + 5) from now; only ever lowers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY:
        return                                  # this backend sets none (docker: a CPU quota instead)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    budget = int(float(limits.get("wall_seconds", 300)) * max(1.0, float(limits.get("cpus", 1)))) + 5
    value = min(hard, int(usage.ru_utime + usage.ru_stime) + 1 + budget)
    resource.setrlimit(resource.RLIMIT_CPU, (value, value))


def _warm_job(slot: Path, out: str, go: str, ready: str, cuda: bool, tell: int) -> int:
    """The job process: import, wait for exactly one job, hand its wall clock to the supervisor, run it."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: die with the supervisor
    except (OSError, AttributeError):
        pass
    ready_fd = _channel(ready, os.O_WRONLY)
    go_fd = _channel(go, os.O_RDONLY)
    _preload(cuda)
    os.write(ready_fd, b"ready\n")
    if _read_line(go_fd) != b"go\n":
        return 0                                # the host went away before giving a job: nothing ran
    job_path, inputs = slot / "job.json", slot / "inputs"
    limits = json.loads(job_path.read_text()).get("limits", {})
    _lower_cpu_limit(limits)
    os.write(tell, f"{float(limits.get('wall_seconds', 300))}\n".encode())
    os.close(tell)
    os.write(ready_fd, b"taken\n")
    os.close(ready_fd)
    os.close(go_fd)
    sys.argv = [sys.argv[0], str(job_path), str(inputs), out]   # what a cold runner's candidate sees
    return main(str(job_path), str(inputs), out)


def _wait_child(pid: int, timeout: float | None, also: int | None = None) -> int | None:
    """The child's exit code once it ends within `timeout` (None: no limit), else None; returns early
    (None) when `also` becomes readable."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            watched = [fd for fd in (pidfd, also) if fd is not None]
            wait = left if pidfd is not None else min(0.01, left if left is not None else 0.01)
            readable, _, _ = select.select(watched, [], [], wait)
            if also is not None and also in readable:
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def warm(slot: str, out: str, go: str, ready: str, cuda: bool = False, private_fds: tuple[int, ...] = ()) -> int:
    """The supervisor: fork the job process, then bound it by the wall clock it reports. `private_fds` are the
    supervisor's own (the zygote's status pipe): the job process closes them first."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # as PID 1 with default handlers, no signal from inside reaches it
    tell_read, tell_write = os.pipe()
    child = os.fork()
    if child == 0:
        for fd in (tell_read, *private_fds):
            os.close(fd)
        code = 1
        try:
            code = _warm_job(Path(slot), out, go, ready, cuda, tell_write)
        except SystemExit as exc:           # what a cold interpreter would exit with
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:               # noqa: BLE001 - a runner fault: say so on stderr, then exit
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)                  # one job, then gone: no interpreter teardown
    os.close(tell_write)
    for spec in (go, ready):                # the channels belong to the job process
        if spec.startswith("fd:"):
            os.close(int(spec[3:]))
    code = _wait_child(child, None, also=tell_read)
    if code is None:                        # the job was taken: it has its wall clock plus grace
        told = _read_line(tell_read)
        wall = float(told) if told.strip() else 0.0
        code = _wait_child(child, wall + GRACE_SECONDS) if told else _wait_child(child, None)
        if code is None:
            if os.getpid() == 1:
                os.kill(-1, signal.SIGKILL)     # everything in this PID namespace but its init
            else:
                os.kill(child, signal.SIGKILL)
            code = _wait_child(child, None)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--warm":
        sys.exit(warm(*sys.argv[2:6], cuda="--cuda" in sys.argv[6:]))
    if len(sys.argv) != 4:
        print("usage: python -m sandbox.runner JOB_JSON INPUTS_DIR OUT_DIR\n"
              "       python -m sandbox.runner --warm SLOT_JOB OUT GO READY [--cuda]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
