"""A sandbox for the benchmarks' own candidates: the runner in a child forked from this process.

Why it exists: the search benchmark trains a few thousand small candidates on 2 cores. A
process-backend job pays 2–3 CPU-seconds to start an interpreter and import torch, as much as
the training it runs; a child forked from a process that has imported torch starts in
milliseconds. Everything else is the path every job takes: `evaluators.harness.evaluate`
lays out the job with held-out inputs drawn from the host's secret, `sandbox.runner.main`
checks, trains and predicts in the child, and the host validates and scores what it wrote.

What the child gets (from `sandbox.confine`, the process backend's own confinement, in a mount
namespace of its own): the home directories hidden (the host's secrets live there) except the
interpreter, venv and project; the job's `hidden_paths` hidden; every filesystem read-only
except the job's `out/` and scratch; PR_SET_PDEATHSIG; a wall clock. Capabilities
`hidden_home`, `hidden_paths`, `readonly_root` where the machine can confine (root or user
namespaces), none otherwise. Whatever the child changes in memory (the task registry's
`attach`, torch's state) dies with it.

What it does not give: no network or PID namespace, no cgroup (memory, CPU quota, pids), no
capability drop and no rlimits. A hostile candidate could escape it. Use it for code this
repository writes (the offline engine's rendered genomes, the shipped baselines), never for an
LLM's, and never outside benchmarks/.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from sandbox import confine
from sandbox.base import failure
from sandbox.process import classify, confine_spec
from wire.jobs import EvalJob, EvalResult

CLONE_NEWNS = 0x00020000
PR_SET_PDEATHSIG = 1
LOG_TAIL_BYTES = 16_384
EXIT_CANNOT_CONFINE = confine.EXIT_CANNOT_CONFINE


def _enter_confinement(writable: list[Path], hidden: tuple[str, ...]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    confine.confine(json.loads(confine_spec(writable, hidden)))


def _child(job: EvalJob, jobdir: Path, log: Path, confined: bool) -> int:
    """In the forked child: confine, then run the runner exactly as a sandbox would. Never returns."""
    code = 1
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        scratch = jobdir / "scratch"
        scratch.mkdir(exist_ok=True)
        if confined:
            try:
                _enter_confinement([jobdir / "out", scratch], tuple(job.limits.hidden_paths))
            except (confine.ConfineError, OSError) as exc:
                print(f"fork sandbox: cannot confine the job: {exc}", flush=True)
                os._exit(EXIT_CANNOT_CONFINE)
        os.chdir(scratch)
        from sandbox import runner
        code = runner.main(str(jobdir / "job.json"), str(jobdir / "inputs"), str(jobdir / "out"))
    except BaseException:  # noqa: BLE001 - the child reports everything through its log and exit code
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@functools.cache
def can_confine() -> bool:
    """Whether a forked child can enter its own confined mount namespace here (tried once)."""
    probe = Path(tempfile.mkdtemp(prefix="archlab-fork-probe-"))
    try:
        pid = os.fork()
        if pid == 0:
            try:
                _enter_confinement([probe], ())
                os._exit(0)
            except BaseException:  # noqa: BLE001 - any failure means "cannot"
                os._exit(1)
        _, status = os.waitpid(pid, 0)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return os.waitstatus_to_exitcode(status) == 0


def warm_up() -> None:
    """Pay, once and in this process, what a job would otherwise pay in every child: the runner's imports and
    what torch imports lazily on first use (the optimiser and FLOP counter pull in torch._dynamo, about two
    CPU-seconds), on a tiny trusted model, as `sandbox.runner --warm` does before its job."""
    import types

    import torch

    from evaluators import bench, decoding_job, fidelities, funchash, proxies  # noqa: F401 - what runner.main imports
    from evaluators.tasks import get_task
    from sandbox import runner  # noqa: F401
    task = get_task("mqar")
    spec = task.default_spec(seq_len=16, num_pairs=2, num_queries=2, short_steps=2)
    tiny = types.ModuleType("fork_sandbox_warm_up")
    tiny.build_model = lambda s: torch.nn.Sequential(torch.nn.Embedding(s.vocab_size, 16),
                                                     torch.nn.Linear(16, s.vocab_size))
    cpu = torch.device("cpu")
    model = fidelities.build(tiny, spec, 0)
    fidelities.check(task, spec, model, cpu)
    fidelities.train(task, spec, model, spec.budgets["short"], 0, cpu)


class ForkSandbox:
    """`Sandbox`: each job in a child forked from this process (see the module docstring for what it isolates)."""

    name = "fork"

    def __init__(self) -> None:
        warm_up()
        self.confined = can_confine()
        self.capabilities = frozenset({"hidden_home", "hidden_paths", "readonly_root"} if self.confined else ())

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        if job.limits.hidden_paths and not self.confined:
            return failure(job, "sandbox_error", "this machine cannot confine forked jobs, so the job's hidden "
                           "paths cannot be hidden; run as root or where user namespaces are allowed")
        log = jobdir / "runner.log"
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(job, jobdir, log, self.confined)
        timed_out, status = False, 0
        deadline = started + job.limits.wall_seconds
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                timed_out = True
                break
            time.sleep(0.02)
        returncode = os.waitstatus_to_exitcode(status)
        tail = log.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", errors="replace") if log.is_file() else ""
        if returncode == EXIT_CANNOT_CONFINE:
            return failure(job, "sandbox_error", "the forked job could not be confined", tail)
        return classify(job, returncode, timed_out, jobdir / "out", tail,
                        {"wall_seconds": time.perf_counter() - started, "cpu_seconds": usage.ru_utime + usage.ru_stime})
