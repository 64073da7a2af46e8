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
children = 0
for _ in range(100000):
    try:
        if os.fork() == 0:
            time.sleep(60)   # MARKER
            os._exit(0)
        children += 1
    except OSError:
        break
print("forked", children)
time.sleep(60)
'''

MEMORY_BOMB = '''
hog = []
while True:
    hog.append(bytearray(256 * 1024 * 1024))
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
