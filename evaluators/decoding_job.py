"""Inside the sandbox: one job of the `decode` task — every timed pass in fresh processes, paired with the reference.

Called by `sandbox.runner` for tasks of family `decoding`. The runner's job process (here
*the parent*) never imports the candidate and never runs any of its code: it hands each
pass's prompts to short-lived pass processes and times them from outside. (What the issue
asked for, in one line: a candidate sees a pass's inputs only when that pass starts, keeps
nothing from one pass to the next, and is timed paired with the reference.)

1. The parent checks the weights file against the spec's digest and reads the header of
   `inputs/prompts.npy` (`passes x prompts` rows); it reads pass k's rows (exactly those
   bytes) only when pass k starts.
2. It starts a *zygote*: a fresh interpreter that builds the model on the CPU, on one thread,
   reads the candidate's source text (not a secret), takes the runner's `sys.argv` (what a
   candidate sees), and from then on only forks pass processes when asked. It never holds a
   prompt, never runs candidate code, never starts an OpenMP team (GNU OpenMP does not survive
   a fork: a child of a process that ran a parallel region hangs in its first one) and never
   touches CUDA (which does not survive a fork either), so every pass process starts clean,
   on CPU or GPU.
3. Every procedure of every pass runs in its own pass process: the candidate; greedy decoding
   with a KV cache (`cached`, the reference the speed-up is measured against); and, on the
   first `NOCACHE_PASSES` passes, greedy decoding without a cache (`nocache`, for context).
   A process is forked when its turn comes, so no candidate process exists while a reference
   runs.
4. A candidate's pass process, before anything of the candidate runs, confines itself with
   Landlock (`evaluators.landlock`): it may read only the interpreter, its libraries and the
   system directories (not the job's inputs, the job directory, the project or the runs
   directory), write only a scratch directory made for this pass and removed after it, and
   ptrace no process outside itself. Then it executes the source, warms up on a fixed public
   text (`WARMUP_TEXT`, never a timed prompt) and says it is ready.
5. The parent reads the pass's prompts, starts its clock (the runner's, bound before any
   candidate code existed, in a process no candidate code runs in) and sends the prompts one
   at a time over a socket, each only when the previous one's ids are back (so no call ever
   sees another prompt, even of its own pass); it stops the clock when the last ids are back.
   The weights and timer checks then run untimed; the pass process exits, and the zygote —
   the subreaper of everything below it — kills whatever it left behind before anything else
   starts: nothing of a pass outlives it.
6. Candidate and references alternate pass by pass on the same prompts (candidate first on
   even passes, references first on odd ones). Every pass process runs under the same thread
   allowance (`torch.set_num_threads(threads)`, set by trusted code before the warm-up and
   again before the timed decode); the sandbox's CPU quota is what makes raising it useless.
7. Passes: at least `MIN_PASSES` (where the prompts allow), at most one per prompt set,
   stopping once the paired interval of the speed-up is within `REL_CI`, or once the spec's
   `time_seconds` of timed decoding are spent.
8. Out: `decoded.npy` (the candidate's ids, int64 [passes x prompts, new tokens]) and
   `timings.npy` (float64 [3, passes]: seconds per pass of candidate, cached, nocache; NaN
   where a procedure did not run). The host judges both (`evaluators.tasks.decode`);
   `environment["reference_sha256"]` digests the cached reference's ids over every pass so
   the host can see the sandbox decodes its prompts as it does.

A pass's failure comes back as a `PassFailure` (status and message: `invalid` for a broken
contract, `oom`, `error` with the candidate's traceback). A pass process killed by a signal
is mirrored: the parent exits with 128 + the signal's number and no report, so the backend
classifies it as it would any job (an OOM kill in the job's memory group is `oom`).

What it does not protect against: a kernel without Landlock (timed fidelities then refuse
with `sandbox_error`; `check` runs unconfined, since nothing is timed); what a pass process
inherits from the zygote — the model, the source, the job's sizes, all public; signals and
abstract unix sockets to the parent or the zygote (Landlock scopes them only from ABI 6;
neither holds anything a later pass needs, and the clock is the parent's: a candidate that
kills one only fails its job); the CPU a candidate takes beyond its allowance while its own
pass runs (the sandbox's CPU quota); and side channels through the kernel (caches, the
page cache). The in-process checks (model weights unchanged, timers not replaced) keep the
contract's messages; a candidate that defeats them harms only its own pass.
"""
from __future__ import annotations

import ctypes
import json
import linecache
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluators import decoding, landlock
from evaluators.contracts import ContractViolation
from evaluators.fidelities import JobFailure
from wire.task import SCREENING, TaskSpec

PROCEDURES = ("candidate", "cached", "nocache")     # the rows of timings.npy
REFERENCES = {"cached": decoding.greedy_cached, "nocache": decoding.greedy_nocache}
MIN_PASSES = 8          # pairs for a signed-rank interval of ~96% (6 is the least that gives any 95% interval)
NOCACHE_PASSES = 3      # the no-cache reference is context (6x slower than cached), not what the speed-up is against
REL_CI = 0.05           # stop adding passes once the speed-up's interval is within +-5%
WARMUP_TEXT = b"Every procedure warms up on this fixed text, never on a timed prompt; its output is not judged. "
HEADER_MAX = 1 << 20    # bytes of one message's JSON header
TRACE_CHARS = 3000
TIMERS = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "process_time")
# bound when the zygote starts, before any candidate exists: a pass process compares them after its candidate ran
_ORIGINAL_TIMERS = {name: getattr(time, name) for name in TIMERS}
_weights_digest = decoding.weights_digest
_PR_SET_CHILD_SUBREAPER = 36
_SYSTEM_READABLE = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys")


class PassFailure(JobFailure):
    """A pass did not give ids: the status the job gets, a message a coder can act on, the candidate's traceback."""


@dataclass
class _Job:
    """What the zygote and every pass process of one job need (sent to the zygote as JSON)."""
    recipe: dict
    weights_path: str
    source_path: str        # the zygote reads it (it is the candidate's own); pass processes exec what it read
    prompt_len: int
    new_tokens: int
    threads: int
    device: str
    confine: bool
    argv: list             # the runner's: what a candidate sees as sys.argv, in every backend


def run(spec: TaskSpec, weights: np.ndarray | None, fidelity: str, inputs: Path, out: Path,
        device: torch.device, clock, threads: int = 1) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, environment) of one decode job; writes `out/decoded.npy` (and `out/timings.npy` when timed).
    PassFailure when a pass gives no ids."""
    if weights is None:
        raise RuntimeError("the job's inputs hold no train_weights.npy; the host writes it (Decode.sandbox_files)")
    if decoding.array_digest(weights.astype(np.float32)) != spec.data["weights_sha256"]:
        raise RuntimeError("the weights file does not hash to the spec's weights_sha256; the host wrote another model")
    timed = fidelity not in SCREENING
    per_pass = spec.budgets["check" if not timed else fidelity if fidelity in spec.budgets else "short"].steps
    prompts = _PromptFile(inputs / "prompts.npy", per_pass)
    confine = landlock.available()
    if timed and not confine:
        raise PassFailure("sandbox_error", "this kernel offers no Landlock (Linux >= 5.13 with landlock among its "
                          "LSMs), which the decode task needs to keep later passes' prompts out of a candidate's "
                          "reach; run timed decode jobs on a machine whose kernel has it")
    job = _Job(recipe={k: spec.data[f"model_{k}"] for k in ("d_model", "n_layers", "n_heads", "max_len", "exit_layer")},
               weights_path=str(inputs / "train_weights.npy"), source_path=str(inputs / "candidate.py"),
               prompt_len=prompts.length, new_tokens=int(spec.data["max_new_tokens" if timed else "check_new_tokens"]),
               threads=threads, device=str(device), confine=confine, argv=list(sys.argv))
    zygote = _Zygote(job)
    try:
        if not timed:
            ids, _ = zygote.run("candidate", prompts.read(0), clock)
            np.save(out / "decoded.npy", ids, allow_pickle=False)
            return {"decoded_rows": float(len(ids))}, {}
        seconds: dict[str, list[float]] = {p: [] for p in PROCEDURES}
        decoded, references = [], []
        least = min(MIN_PASSES, prompts.passes)
        for k in range(prompts.passes):
            rows = prompts.read(k)              # only now: nothing a pass process inherits ever held them anyway
            order = ("candidate", "cached", "nocache") if k % 2 == 0 else ("cached", "nocache", "candidate")
            for procedure in order:
                if procedure == "nocache" and k >= NOCACHE_PASSES:
                    seconds[procedure].append(math.nan)
                    continue
                ids, spent = zygote.run(procedure, rows, clock)
                seconds[procedure].append(spent)
                if procedure == "candidate":
                    decoded.append(ids)
                elif procedure == "cached":
                    references.append(ids)
            if k + 1 >= least:
                _, low, high = decoding.paired_ratio(seconds["cached"], seconds["candidate"])
                spent_total = sum(v for p in PROCEDURES for v in seconds[p] if not math.isnan(v))
                if math.sqrt(high / low) - 1 <= REL_CI or spent_total > float(spec.data["time_seconds"]):
                    break
    finally:
        zygote.close()
    np.save(out / "decoded.npy", np.concatenate(decoded), allow_pickle=False)
    np.save(out / "timings.npy", np.array([seconds[p] for p in PROCEDURES], dtype=np.float64), allow_pickle=False)
    environment = {"reference_sha256": decoding.array_digest(np.concatenate(references)),
                   "pass_isolation": f"zygote+landlock{landlock.abi()}"}
    return {"decoded_rows": float(sum(len(d) for d in decoded)), "passes": float(len(decoded))}, environment


# --- the parent's side: the zygote, and one pass process ---------------------------------------------
class _PromptFile:
    """`prompts.npy` read pass by pass: the header now, a pass's rows (exactly their bytes) when asked."""

    def __init__(self, path: Path, per_pass: int):
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if dtype != np.dtype("<i8") or fortran or len(shape) != 2 or shape[0] % per_pass:
            raise RuntimeError(f"prompts.npy is {dtype} {shape}; the host writes int64 [passes x {per_pass}, length]")
        self.path, self.per_pass, self.length, self.passes = path, per_pass, int(shape[1]), shape[0] // per_pass

    def read(self, k: int) -> np.ndarray:
        size = self.per_pass * self.length * 8
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, size, self.offset + k * size)
        finally:
            os.close(fd)
        return np.frombuffer(data, dtype="<i8").reshape(self.per_pass, self.length).copy()


class _Zygote:
    """The fresh interpreter that holds the model and forks pass processes (see the module docstring, step 2)."""

    def __init__(self, job: _Job):
        self.job = job
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(decoding.__file__).resolve().parent.parent)      # where `evaluators` is importable from
        path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.proc = subprocess.Popen([sys.executable, "-m", "evaluators.decoding_job", json.dumps(job.__dict__),
                                      str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     env={**os.environ, "PYTHONPATH": path})
        theirs.close()
        self._ask({"do": "hello"})

    def _ask(self, request: dict, fds: tuple[int, ...] = ()) -> dict:
        data = json.dumps(request).encode()
        try:
            socket.send_fds(self.control, [data], list(fds)) if fds else self.control.send(data)
            answer = self.control.recv(HEADER_MAX)
        except OSError:
            answer = b""
        if not answer:
            raise PassFailure("error", "the evaluator's process that starts every pass died (a candidate must not "
                              "signal other processes)")
        reply = json.loads(answer)
        if "error" in reply:
            raise RuntimeError(f"the decode zygote failed: {reply['error']}")
        return reply

    def run(self, procedure: str, rows: np.ndarray, clock) -> tuple[np.ndarray, float]:
        """(ids int64 [prompts, new tokens], seconds) of one procedure on one pass: its process prepares (untimed),
        then decodes `rows` one prompt at a time — the next prompt is sent only when the previous one's ids are
        back — timed from here."""
        mine, theirs = socket.socketpair()
        pid = self._ask({"do": "start", "procedure": procedure}, (theirs.fileno(),))["pid"]
        theirs.close()
        child = _Pass(procedure, mine)
        try:
            _send(mine, {"do": "prepare"})
            child.expect("ready")
            rows = np.ascontiguousarray(rows, dtype="<i8")
            size, out = self.job.new_tokens * 8, []
            started = clock()
            for row in rows:
                _send(mine, {"do": "decode"}, row.tobytes())
                out.append(child.expect("ids", size))
            seconds = clock() - started
            _send(mine, {"do": "done"})
            child.expect("clean")                                  # the untimed checks after the pass
        except (EOFError, BrokenPipeError, ConnectionResetError):
            mine.close()
            self._died(procedure, self._ask({"do": "end", "pid": pid}))
        finally:
            mine.close()
            self._ask({"do": "end", "pid": pid})               # it, and everything it left behind, are gone
        ids = np.frombuffer(b"".join(out), dtype="<i8").reshape(len(rows), self.job.new_tokens).copy()
        if ids.size and (ids.min() < 0 or ids.max() > 255):
            raise PassFailure("invalid", f"generate returned ids outside [0, 256) (min {ids.min()}, max {ids.max()})")
        return ids, seconds

    def _died(self, procedure: str, ended: dict):
        code = ended["code"]
        if ended["killed"]:
            raise PassFailure("error", f"the {procedure} process closed its connection to the evaluator and kept "
                              "running; generate must return its ids")
        if code is not None and code < 0:
            # killed by a signal (an OOM kill in the job's memory group, say): end this job the way a killed process
            # ends (128 + N, as a shell reports it; this process may be PID 1 of its namespace, which no signal of
            # its own kills), so the backend classifies it as it classifies any job
            self.close()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 - code)
        raise PassFailure("error", f"the {procedure} process exited with code {code} in the middle of a pass; "
                          "generate must return its ids (do not exit, fork or close inherited descriptors)")

    def close(self) -> None:
        try:
            self.control.close()
            self.proc.wait(timeout=30)                 # it kills what is left of its children on EOF, then exits
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Pass:
    """The parent's end of one pass process's socket."""

    def __init__(self, procedure: str, sock: socket.socket):
        self.procedure, self.sock = procedure, sock

    def expect(self, status: str, size: int = 0) -> bytes:
        try:
            header, body = _receive(self.sock, size)
        except ValueError as exc:
            raise PassFailure("invalid", f"the {self.procedure} process sent a malformed reply ({exc}); the "
                              "candidate must not write to the evaluator's socket") from None
        if header.get("status") == status:
            return body
        if self.procedure != "candidate":
            raise RuntimeError(f"the {self.procedure} reference failed: {header.get('message', '')}"[:2000])
        raise PassFailure(str(header.get("status", "error")), str(header.get("message", ""))[:5000],
                          str(header.get("trace", ""))[-TRACE_CHARS:])


# --- the zygote's side ----------------------------------------------------------------------------------
def _zygote(argv: list[str]) -> int:
    """The zygote's loop: build the model, then start and end pass processes as the parent asks."""
    torch.set_num_threads(1)                   # no OpenMP team in this process, ever: its children fork from it
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)    # orphans of pass processes become ours to kill
    job = _Job(**json.loads(argv[0]))
    control = socket.socket(fileno=int(argv[1]))
    sys.argv = list(job.argv)
    source = Path(job.source_path).read_text()
    weights = np.load(job.weights_path, allow_pickle=False)
    model = decoding.load_flat(decoding.model_from_recipe(job.recipe), weights).eval().requires_grad_(False)
    digest = _weights_digest(model)
    scratches: dict[int, Path | None] = {}      # live pass processes -> their scratch directory
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, HEADER_MAX, 1)
        except OSError:
            data, fds = b"", []
        if not data:                            # the parent is done (or gone): nothing of this job outlives it
            _sweep()
            return 0
        request = json.loads(data)
        if request["do"] == "hello":
            reply: dict = {"digest": digest}
        elif request["do"] == "start":
            procedure = request["procedure"]
            scratch = Path(tempfile.mkdtemp(prefix="decode-pass-")) if procedure == "candidate" else None
            _flush()
            pid = os.fork()
            if pid == 0:                                           # the pass process: never returns
                code = 1
                try:
                    control.close()
                    code = _serve(socket.socket(fileno=fds[0]), job, source, model, digest, procedure, scratch)
                finally:
                    _flush()
                    os._exit(code)
            os.close(fds[0])
            scratches[pid] = scratch
            reply = {"pid": pid}
        else:                                                      # "end"
            pid = int(request["pid"])
            code, killed = None, False
            if pid in scratches:
                killed = _running(pid, grace=1.0)          # it exits on its own once done (or once it died)
                os.kill(pid, signal.SIGKILL)
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                scratch = scratches.pop(pid)
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
            _sweep()
            reply = {"code": code, "killed": killed}
        control.send(json.dumps(reply).encode())


def _running(pid: int, grace: float) -> bool:
    """Whether `pid` (a child) still runs after `grace` seconds, without reaping it."""
    deadline = time.monotonic() + grace
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return False
        except ChildProcessError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.005)


def _sweep() -> None:
    """SIGKILL and reap every child of this process until none is left (orphans reparent here: a subreaper)."""
    for _ in range(10_000):
        strays = _children()
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


# --- messages: a length-prefixed JSON header, then raw bytes ---------------------------------------
def _send(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    data = json.dumps({**header, "bytes": len(payload)}).encode()
    sock.sendall(struct.pack(">I", len(data)) + data + payload)


def _receive(sock: socket.socket, size: int | None) -> tuple[dict, bytes]:
    """(header, payload); the payload must be `size` bytes or none (None: what the header says, from a trusted
    peer). EOFError if the peer is gone, ValueError if the message is malformed."""
    length = struct.unpack(">I", _exactly(sock, 4))[0]
    if length > HEADER_MAX:
        raise ValueError(f"a header of {length} bytes")
    header = json.loads(_exactly(sock, length))
    announced = header.get("bytes") if isinstance(header, dict) else None
    if not isinstance(announced, int) or announced < 0 or (size is not None and announced not in (0, size)):
        raise ValueError(f"{announced} bytes announced, {size} expected")
    return header, _exactly(sock, announced) if announced else b""


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the child's side ---------------------------------------------------------------------------------
def _serve(sock: socket.socket, job: _Job, source: str, model: torch.nn.Module, digest: str, procedure: str,
           scratch: Path | None) -> int:
    """One pass in this process: prepare when told, decode the prompts it is sent, report; the exit code."""
    try:
        torch.set_num_threads(job.threads)
        _receive(sock, 0)                                          # "prepare"
        model = model.to(torch.device(job.device))
        if procedure == "candidate":
            if job.confine:
                landlock.restrict(_rules(scratch))
            os.chdir(scratch)
            os.environ.update(HOME=str(scratch), TMPDIR=str(scratch))
            tempfile.tempdir = None
            generate = _load_generate(source, job.source_path)
        else:
            generate = REFERENCES[procedure]
        warmup = torch.tensor(list((WARMUP_TEXT * 8)[:job.prompt_len]), dtype=torch.long, device=model_device(model))
        with torch.no_grad():
            validated(generate(model, warmup, job.new_tokens), job.new_tokens)
        tampering(model, digest)
        torch.set_num_threads(job.threads)
        _flush()
        _send(sock, {"status": "ready"})
        device = model_device(model)
        while True:                                                # one prompt at a time, until "done"
            header, payload = _receive(sock, None)
            if header.get("do") != "decode":
                break
            prompt = torch.from_numpy(np.frombuffer(payload, dtype="<i8").copy()).to(device)
            with torch.no_grad():
                ids = validated(generate(model, prompt, job.new_tokens), job.new_tokens)
            _send(sock, {"status": "ids"}, ids.astype("<i8").tobytes())
        tampering(model, digest)
        _flush()                                                   # the parent ends this process on "clean"
        _send(sock, {"status": "clean"})
        return 0
    except ContractViolation as exc:
        _report(sock, "invalid", str(exc))
    except MemoryError:
        _report(sock, "oom", "the candidate ran out of memory (MemoryError); use less memory per step or chunk the "
                             "computation")
    except landlock.LandlockError as exc:
        _report(sock, "sandbox_error", f"could not confine the candidate's pass process: {exc}")
    except BaseException as exc:  # noqa: BLE001 - any failure of the candidate's code is its pass's result
        text = str(exc)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            _report(sock, "oom", f"the candidate ran out of memory: {text[:300]}; use less memory or chunk the "
                                 "computation")
        else:
            _report(sock, "error", f"{type(exc).__name__}: {text[:500]}", _trace(exc, job.source_path))
    return 0


def model_device(model: torch.nn.Module) -> torch.device:
    return model.embed.weight.device


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _report(sock: socket.socket, status: str, message: str, trace: str = "") -> None:
    _flush()
    try:
        _send(sock, {"status": status, "message": message, "trace": trace})
    except OSError:
        pass


def _trace(exc: BaseException, source_path: str) -> str:
    """The traceback, trimmed to the candidate's frames plus the error line."""
    lines = traceback.format_exception(exc)
    frames = [line for line in lines[1:] if source_path in line]
    return ("".join(frames[-4:]) + lines[-1] if frames else "".join(lines))[-TRACE_CHARS:]


def _rules(scratch: Path) -> list[tuple[Path, int]]:
    """What a candidate's pass process may touch: read the interpreter, its libraries and the system directories;
    write its own scratch; open devices (a GPU's) read-write. Not the project, the job or the runs directory."""
    prefixes = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    rules = [(Path(p), landlock.READ) for p in _SYSTEM_READABLE] + [(p, landlock.READ) for p in sorted(prefixes)]
    rules.append((Path("/dev"), landlock.READ | landlock.WRITE_FILE))
    rules.append((scratch, landlock.EVERYTHING))
    return rules


def _load_generate(source: str, path: str):
    """The candidate's `generate`, executed from the source the parent read (the file itself is out of reach)."""
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)     # tracebacks show its lines
    module = type(sys)("candidate")
    module.__file__ = path
    sys.modules["candidate"] = module
    exec(compile(source, path, "exec"), module.__dict__)
    if not callable(getattr(module, "generate", None)):
        raise ContractViolation("the module defines no generate(model, prompt_ids, max_new_tokens) function; add one "
                                "that returns a 1-D torch.long tensor of max_new_tokens ids")
    return module.generate


def validated(ids, max_new_tokens: int) -> np.ndarray:
    """The ids of one generate call as int64 [max_new_tokens]; ContractViolation saying what is wrong."""
    if not isinstance(ids, torch.Tensor):
        raise ContractViolation(f"generate returned {type(ids).__name__}; return a 1-D torch.long tensor of "
                                f"{max_new_tokens} token ids")
    if ids.dtype != torch.long:
        raise ContractViolation(f"generate returned dtype {ids.dtype}; return torch.long ids (e.g. `.long()`)")
    if tuple(ids.shape) != (max_new_tokens,):
        raise ContractViolation(f"generate returned shape {tuple(ids.shape)}; expected ({max_new_tokens},): exactly "
                                "max_new_tokens new ids, without the prompt and without a batch dimension")
    out = ids.detach().cpu().numpy().astype(np.int64)
    if out.size and (out.min() < 0 or out.max() > 255):
        raise ContractViolation(f"generate returned ids outside [0, 256) (min {out.min()}, max {out.max()})")
    return out


def tampering(model: torch.nn.Module, digest: str) -> None:
    """ContractViolation if the model's weights or the time functions are not what they were."""
    replaced = [f"time.{name}" for name, fn in _ORIGINAL_TIMERS.items() if getattr(time, name, None) is not fn]
    if replaced:
        raise ContractViolation(f"the candidate replaced {', '.join(replaced)}; timing is the evaluator's job: "
                                "leave the time module alone")
    if _weights_digest(model) != digest:
        raise ContractViolation("generate changed the model's weights or buffers; the model is shared and must not "
                                "be modified: work on a copy (e.g. quantize_dynamic(model, inplace=False)) or on "
                                "separate tensors")


if __name__ == "__main__":
    sys.exit(_zygote(sys.argv[1:]))
