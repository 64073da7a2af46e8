"""Hostile candidates: each tries one way of escaping, hogging or lying; the sandbox must contain it.

Every case is a module whose hostile action runs at import or in `build_model`. `MARKER` in a
source is replaced with a per-test unique string so leftovers can be found in /proc.
"""
from __future__ import annotations

MODEL = '''
import torch
class M(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.emb = torch.nn.Embedding(spec.vocab_size, spec.vocab_size)
    def forward(self, x):
        return self.emb(x)
def build_model(spec):
    return M(spec)
'''

FORK_BOMB = '''
import os, time
# each child execs a shell whose command line carries MARKER, so leftovers can be found in /proc
hold = HOLD_SECONDS          # after the first refusal, keep hammering fork() this long
children, refused, first = 0, None, None
while refused is not None or children < 1000:   # 1000 without a refusal: nothing limits processes
    try:
        pid = os.fork()
    except OSError as exc:
        refused, first = exc, first or time.monotonic()
        if time.monotonic() - first >= hold:
            break
        time.sleep(0.01)
        continue
    if pid == 0:
        try:
            os.execv("/bin/sh", ["/bin/sh", "-c", "sleep 60; echo MARKER"])
        finally:
            os._exit(0)
    children += 1
if refused is None:
    raise RuntimeError(f"forked {children} children and was never refused")
raise RuntimeError(f"fork refused after {children} children: {refused}")
'''

MEMORY_BOMB = '''
hog = []
while True:
    hog.append(bytearray(256 * 1024 * 1024))
'''

MEMORY_RAMP = '''
import re
hog = []
while True:
    hog.append(bytearray(16 * 1024 * 1024))          # bytearray(n) writes its zeros: resident at once
    status = open("/proc/self/status").read()        # anonymous memory is this job's own (shared libraries are not)
    print("resident", int(re.search(r"RssAnon:\\s+(\\d+)", status).group(1)) // 1024, flush=True)
'''

INFINITE_LOOP = '''
while True:
    pass
'''

SLEEP_PAST_TIMEOUT = '''
import time
time.sleep(600)
'''

WRITE_OUTSIDE = '''
import sys, pathlib
targets = [pathlib.Path(__file__), pathlib.Path(sys.argv[1]), pathlib.Path("ESCAPE_PATH")]
for target in targets:
    try:
        target.write_text("pwned MARKER")
        print("wrote", target)
    except OSError as exc:
        print("refused", target, exc)
''' + MODEL

READ_HOME = '''
try:
    print("home secret:", open("SECRET_PATH").read())
except OSError as exc:
    print("refused", exc)
''' + MODEL

READ_ENV = '''
import os
print("environment:", dict(os.environ))
''' + MODEL

NETWORK = '''
import socket
print("interfaces:", [name for _, name in socket.if_nameindex()])
''' + MODEL

FLOOD_STDOUT = '''
import sys
line = "x" * 1023 + "\\n"
for _ in range(200 * 1024):
    sys.stdout.write(line)
''' + MODEL

BACKGROUND = '''
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # MARKER"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
''' + MODEL

FILL_DISK = '''
import os
with open("fill.bin", "wb") as f:
    for _ in range(4096):
        f.write(b"\\0" * (1024 * 1024))
''' + MODEL

SEGFAULT = '''
import ctypes
ctypes.string_at(0)
''' + MODEL

FORGED_REPORT = '''
import json, sys, time, pathlib
out = pathlib.Path(sys.argv[3])
fake = {"status": "ok", "metrics": {"accuracy": 1.0, "params": 1.0}, "message": "", "curve": []}
(out / "report.json").write_text(json.dumps(fake))
json.dumps = lambda *a, **k: '{"status": "ok", "metrics": {"accuracy": 1.0}}'
time.perf_counter = lambda: 0.0
''' + MODEL

SIBLING = '''
import signal, subprocess, sys
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # MARKER"])
code = helper.wait()                 # the test ends the helper with SIGTERM; an attacker would use SIGKILL
if code != -signal.SIGTERM:
    raise RuntimeError(f"my helper process ended with {code}: something other than the test killed it")
print("sibling helper finished")
''' + MODEL

ATTACK_SIBLINGS = '''
import os, signal
for pid in TARGETS:
    try:
        os.kill(pid, signal.SIGKILL)
        print("signalled", pid)
    except OSError as exc:
        print("signal refused", pid, type(exc).__name__)
    try:
        data = open(f"/proc/{pid}/environ", "rb").read()
        print("read", pid, len(data))
    except OSError as exc:
        print("read refused", pid, type(exc).__name__)
print("visible:", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
''' + MODEL

RAN_ONCE = '''
import os, pathlib, sys, time
pathlib.Path(sys.argv[3], f"ran-{os.getpid()}-{time.time_ns()}").write_text("ran")
print("candidate ran")
''' + MODEL

SHOW_DEVICES = '''
import os
print("devices:", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
''' + MODEL

BESIDE_A_BOMB = '''
import subprocess, sys
subprocess.run([sys.executable, "-c", "import time; time.sleep(300)  # MARKER"])   # the test ends it from outside
done = subprocess.run([sys.executable, "-c", "print('spawned while the bomb held')"], capture_output=True, text=True)
print(done.stdout.strip())
''' + MODEL


# --- decoding procedures (the `decode` task): each misbehaves inside generate(model, prompt_ids, max_new_tokens) ---
DECODE_GREEDY = '''
import torch
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens):
    seq = prompt_ids.view(1, -1)
    for _ in range(max_new_tokens):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[0, prompt_ids.numel():].clone()
'''

DECODE_WRONG_LENGTH = DECODE_GREEDY.replace("return seq[0, prompt_ids.numel():].clone()",
                                            "return seq[0, prompt_ids.numel() + 1:].clone()")

DECODE_WRONG_DTYPE = DECODE_GREEDY.replace(".clone()", ".int()")

DECODE_INFINITE_LOOP = '''
def generate(model, prompt_ids, max_new_tokens):
    while True:
        pass
'''

DECODE_MEMORY_BOMB = '''
import torch
def generate(model, prompt_ids, max_new_tokens):
    hog = []
    while True:
        hog.append(torch.ones(64 * 1024 * 1024))      # 256 MB a step, written at once
'''

DECODE_MUTATES_MODEL = DECODE_GREEDY.replace("    seq = prompt_ids.view(1, -1)\n",
                                             "    model.head.weight.mul_(1.01)   # 'calibrates' the shared model\n"
                                             "    seq = prompt_ids.view(1, -1)\n", 1)

# looks everywhere it can for the reference continuation: files next to its inputs, and int64 tensors of the
# right length in the process's memory; returns what it finds, else zeros
DECODE_READS_REFERENCE = '''
import gc, pathlib, sys
import numpy as np
import torch
FOUND = []
def _search(n):
    roots = {pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[2]).parent, pathlib.Path(sys.argv[3]).parent}
    for root in roots:
        for path in root.rglob("*.npy"):
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                continue
            FOUND.append(str(path))
            if array.dtype == np.int64 and array.ndim == 2 and array.shape[1] == n and "prompt" not in path.name:
                return torch.from_numpy(array[0])
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.dtype == torch.long and tuple(obj.shape) == (n,):
            return obj.clone()
    return None
def generate(model, prompt_ids, max_new_tokens):
    stolen = _search(max_new_tokens)
    print("found", len(FOUND), "files; stolen", stolen is not None)
    return stolen if stolen is not None else torch.zeros(max_new_tokens, dtype=torch.long)
'''

# a slow clock for everything timed after import: the candidate would look 1000x faster
DECODE_PATCHES_TIMER = '''
import time
_real = time.perf_counter
time.perf_counter = lambda: _real() / 1000.0
''' + DECODE_GREEDY


# --- resources and hidden paths ----------------------------------------------------------------------------------
# the CPU quota of the job's own cgroup as the job sees it (v1 or v2), "unlimited" or "unknown"
CPU_QUOTA_PROBE = '''
def quota():
    groups = dict(line.split(":", 2)[1:] for line in open("/proc/self/cgroup").read().splitlines())
    own = groups.get("cpu") or groups.get("cpu,cpuacct") or groups.get("") or "/"
    for root in ("/sys/fs/cgroup/cpu" + own, "/sys/fs/cgroup/cpu", "/sys/fs/cgroup" + own, "/sys/fs/cgroup"):
        try:
            value, period = open(root + "/cpu.max").read().split()
            return "unlimited" if value == "max" else int(value) / int(period)
        except OSError:
            pass
        try:
            value = int(open(root + "/cpu.cfs_quota_us").read())
            return "unlimited" if value < 0 else value / int(open(root + "/cpu.cfs_period_us").read())
        except OSError:
            pass
    return "unknown"
'''

# takes more CPU than it was given: 4 threads hashing in C (the GIL released) beside torch asked for 8 threads of
# matmul, for SECONDS seconds; prints the CPU-seconds it got per wall second (its own getrusage) and the CPU quota
# it can see from inside (cgroup v1 or v2, the job's own group or the container's)
CPU_HOG = '''
import hashlib, os, resource, threading, time
import torch
''' + CPU_QUOTA_PROBE + '''
def hash_for(seconds):
    data = b"x" * (1 << 20)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hashlib.sha256(data).digest()

torch.set_num_threads(8)
a = torch.randn(512, 512)
used, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
threads = [threading.Thread(target=hash_for, args=(SECONDS,)) for _ in range(4)]
for thread in threads:
    thread.start()
end = time.monotonic() + SECONDS
while time.monotonic() < end:
    a = torch.tanh(a @ a)
for thread in threads:
    thread.join()
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
print(f"cpu per wall {cpu / (time.perf_counter() - wall):.3f}")
print(f"quota {quota()}")
''' + MODEL

# tries to read the hidden file and directory FILE and DIR (directly, through /proc/self/root, through a symlink of
# its own, by listing); CONTROL is a file beside them that is not hidden, so a failed read proves the hiding
READ_HIDDEN = '''
import os
attempts = {"file": "FILE", "file via /proc/self/root": "/proc/self/root" + "FILE",
            "file in dir": "DIR/inner.txt", "dir via /proc/self/root": "/proc/self/root" + "DIR/inner.txt",
            "control": "CONTROL"}
os.symlink("FILE", "link-to-file")
os.symlink("DIR", "link-to-dir")
attempts["file via symlink"] = "link-to-file"
attempts["dir via symlink"] = "link-to-dir/inner.txt"
for name, path in attempts.items():
    try:
        print(f"{name}: read {open(path).read()!r}")
    except OSError as exc:
        print(f"{name}: refused {type(exc).__name__}")
try:
    print(f"dir listing: {sorted(os.listdir('DIR'))}")
except OSError as exc:
    print(f"dir listing: refused {type(exc).__name__}")
''' + MODEL


# --- the fork path (`sandbox.zygote`): one job leaves traces, the next job from the same zygote looks for them ---
LEAVE_TRACES = '''
import os, pathlib, subprocess, sys, tempfile
import torch
import evaluators.fidelities as fidelities
fidelities.ARCHLAB_TRACE = "MARKER"                    # a module global of a module the zygote imported
torch.set_default_dtype(torch.float64)                  # a process-wide torch setting
torch.manual_seed(1234)
os.environ["ARCHLAB_TRACE"] = "MARKER"
for folder in ("/tmp", os.environ["HOME"], tempfile.gettempdir()):
    try:
        pathlib.Path(folder, "trace-MARKER").write_text("MARKER")
        print("wrote", folder)
    except OSError as exc:
        print("write refused", folder, type(exc).__name__)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # MARKER"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
torch.set_default_dtype(torch.float32)                  # the model itself must still build
print("left traces")
''' + MODEL

LOOK_FOR_TRACES = '''
import os, pathlib, tempfile
import torch
import evaluators.fidelities as fidelities
print("global:", getattr(fidelities, "ARCHLAB_TRACE", None))
print("dtype:", torch.get_default_dtype())
print("env:", os.environ.get("ARCHLAB_TRACE"))
print("files:", sorted(str(p) for folder in ("/tmp", os.environ["HOME"], tempfile.gettempdir())
                       for p in pathlib.Path(folder).glob("trace-*")))
print("processes:", [p for p in os.listdir("/proc") if p.isdigit()
                     and b"MARKER" in pathlib.Path("/proc", p, "cmdline").read_bytes()])
print("rng:", torch.initial_seed(), float(torch.rand(1)))
''' + MODEL

SHOW_NAMESPACES = '''
import os
for name in ("pid", "net", "mnt"):
    print(f"ns {name}:", os.readlink(f"/proc/self/ns/{name}"))
print("pid:", os.getpid(), "parent:", os.getppid())
print("cgroup:", open("/proc/self/cgroup").read().replace("\\n", ";"))
print("status:", " ".join(line for line in open("/proc/self/status").read().splitlines()
                         if line.startswith(("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"))))
''' + MODEL
