"""Evaluator-gaming decoding procedures for the `decode` task: each tries to look faster without decoding faster.

The record is `tests.gaming_cases.GamingCase`; these are the cases that only make sense for a
timed procedure (`evaluators.decoding_job`). Every case is the honest twin (`HONEST_DECODE`:
greedy decoding with a KV cache, the procedure the speed-up is measured against) with its own
`game` in place of the honest one, so "no gain" means: no faster than the twin. A case that
looks for something it must not find prints `GAMING found=N` each time it finds it (0 when
the rule held). `no_gain(result, honest)` is the verdict both suites use: the run is `ok` and
its speed-up interval does not lie above the twin's, or its output is not greedy's (the
default objective then calls it infeasible). `tests/test_decode_gaming.py` runs them on the
process backend; `tests/test_gaming_conformance.py` on both backends.
"""
from __future__ import annotations

import re

from tests.gaming_cases import GamingCase

HONEST_DECODE = '''
import gc, inspect, os, sys
from pathlib import Path
import numpy as np
import torch


@torch.no_grad()
def decode(model, prompt_ids, max_new_tokens):
    """Greedy decoding with a KV cache."""
    cache = [None] * model.n_layers
    h = model.embed_at(prompt_ids.view(1, -1), 0)
    for i, block in enumerate(model.blocks):
        h, cache[i] = block(h, cache[i])
    nxt = model.final(h[:, -1:]).argmax(-1)
    out, pos = [nxt], prompt_ids.numel()
    for _ in range(max_new_tokens - 1):
        h = model.embed_at(nxt, pos)
        for i, block in enumerate(model.blocks):
            h, cache[i] = block(h, cache[i])
        nxt = model.final(h).argmax(-1)
        out.append(nxt)
        pos += 1
    return torch.cat(out, dim=1)[0]


def generate(model, prompt_ids, max_new_tokens):
    return game(model, prompt_ids, max_new_tokens)


def game(model, prompt_ids, max_new_tokens):
    return decode(model, prompt_ids, max_new_tokens)
'''

# Every place a job can write, or could in the harness before pass isolation: where state would survive a pass.
_PLACES = '''

def places():
    found = [os.environ.get("HOME"), os.environ.get("TMPDIR"), os.getcwd(), "/tmp", "/dev/shm"]
    found += [str(Path(arg).parent) for arg in sys.argv[1:]] + sys.argv[1:]
    return [Path(p) for p in dict.fromkeys(p for p in found if p)]
'''

# The exploit that was scored thousands of times faster than cached greedy at 100% exact match: on its first call
# (the untimed warm-up) it gathers every prompt it can reach (the job's inputs, the callers' frames, live objects),
# decodes them all, keeps the answers in memory and on disk for later passes, and afterwards returns stored answers.
WARMUP_CACHE = HONEST_DECODE + _PLACES + '''
STORE = "decode-answers.npz"
_answers = {}
for _place in places():
    try:
        with np.load(_place / STORE) as _stored:
            _answers.update({bytes.fromhex(k): torch.from_numpy(v) for k, v in _stored.items()})
    except (OSError, ValueError):
        pass


def reachable(length):
    """Every 1-D int64 sequence of `length` tokens within reach: .npy files near the argv paths, the evaluator's
    frames, and every live tensor or array."""
    rows = []
    def take(value):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if isinstance(array, np.ndarray) and array.dtype == np.int64 and array.shape[-1:] == (length,):
            rows.extend(array.reshape(-1, length))
    for place in places():
        try:
            for path in place.rglob("*.npy"):
                try:
                    take(np.load(path, allow_pickle=False))
                except (OSError, ValueError):
                    pass
        except OSError:
            pass
    for frame in inspect.stack(0):
        for value in list(frame.frame.f_locals.values()):
            take(value)
    for obj in gc.get_objects():
        if isinstance(obj, (torch.Tensor, np.ndarray)):
            take(obj)
    return {row.tobytes() for row in rows}


def game(model, prompt_ids, max_new_tokens):
    key = prompt_ids.cpu().numpy().tobytes()
    if not _answers.get("warm"):                                   # the first call: the untimed warm-up
        _answers["warm"] = True
        stolen = reachable(prompt_ids.numel()) - {key}
        for row in stolen:
            _answers[row] = decode(model, torch.from_numpy(np.frombuffer(row, dtype=np.int64).copy()), max_new_tokens)
        for place in places():
            try:
                np.savez(place / STORE, **{k.hex(): v.numpy() for k, v in _answers.items() if isinstance(k, bytes)})
            except OSError:
                pass
        return decode(model, prompt_ids, max_new_tokens)
    hit = key in _answers
    print(f"GAMING found={int(hit)}", flush=True)
    return _answers[key] if hit else decode(model, prompt_ids, max_new_tokens)
'''

# Leaves a mark in every writable place on every call, and counts the marks earlier pass processes left; in memory,
# notices when its process serves a second pass (every pass process starts with the same warm-up prompt).
KEEPS_STATE = HONEST_DECODE + _PLACES + '''
MARK = "decode-pass-mark"
_first = None


def earlier_marks():
    count = 0
    for place in places():
        try:
            count += sum(1 for pid in (place / MARK).read_text().split() if pid != str(os.getpid()))
        except OSError:
            pass
    return count


def game(model, prompt_ids, max_new_tokens):
    global _first
    key = prompt_ids.cpu().numpy().tobytes()
    again = _first is not None and key == _first
    _first = key if _first is None else _first
    for place in places():
        try:
            with open(place / MARK, "a") as handle:
                handle.write(f"{os.getpid()} ")
        except OSError:
            pass
    print(f"GAMING found={earlier_marks() + int(again)}", flush=True)
    return decode(model, prompt_ids, max_new_tokens)
'''

# Stores the answer of its first timed prompt and returns it for every later one: fast, and not greedy's output.
REPLAYS_ANSWERS = HONEST_DECODE + '''
_stored = []


def game(model, prompt_ids, max_new_tokens):
    if len(_stored) < 2:                                           # the warm-up, then the first timed prompt
        _stored.append(decode(model, prompt_ids, max_new_tokens))
    return _stored[-1]
'''

# A slow clock for everything timed after import: it would look 1000x faster if its clock timed it.
PATCHES_TIMER = '''
import time
_real, _mono = time.perf_counter, time.monotonic
time.perf_counter = lambda: _real() / 1000.0
time.monotonic = lambda: _mono() / 1000.0
''' + HONEST_DECODE

# The same, but only while its own call runs, and put back before it returns (so no check after a call sees it);
# it also slows every clock it can find in the evaluator's modules.
PATCHES_CLOCK_QUIETLY = HONEST_DECODE + '''
import time


def game(model, prompt_ids, max_new_tokens):
    saved = {name: getattr(time, name) for name in ("perf_counter", "monotonic", "time")}
    patched = []
    for module in list(sys.modules.values()):
        for name in ("_clock", "clock"):
            real = getattr(module, name, None)
            if callable(real):
                try:
                    setattr(module, name, lambda real=real: real() / 1000.0)
                    patched.append((module, name, real))
                except (AttributeError, TypeError):
                    pass
    for name, real in saved.items():
        setattr(time, name, lambda real=real: real() / 1000.0)
    try:
        return decode(model, prompt_ids, max_new_tokens)
    finally:
        for name, real in saved.items():
            setattr(time, name, real)
        for module, name, real in patched:
            setattr(module, name, real)
'''

# Disables the in-process checks of its own pass process, then returns greedy's ids shifted out of the vocabulary.
OUT_OF_RANGE_IDS = HONEST_DECODE + '''
for _module in list(sys.modules.values()):
    if hasattr(_module, "validated") and hasattr(_module, "tampering"):
        _module.validated = lambda ids, n: ids.detach().cpu().numpy()
        _module.tampering = lambda model, digest: None


def game(model, prompt_ids, max_new_tokens):
    return decode(model, prompt_ids, max_new_tokens) + 256
'''

# Correct on its first call (the warm-up, and all a check decodes), then zeros: what the timer sees is not the task.
WRONG_WHEN_TIMED = HONEST_DECODE + '''
_calls = 0


def game(model, prompt_ids, max_new_tokens):
    global _calls
    _calls += 1
    return decode(model, prompt_ids, max_new_tokens) if _calls == 1 else torch.zeros(max_new_tokens, dtype=torch.long)
'''

# Every thread it can get, asked for at import and on every call, busy in the same greedy decode.
EXTRA_THREADS = HONEST_DECODE + '''
torch.set_num_threads(64)


def game(model, prompt_ids, max_new_tokens):
    torch.set_num_threads(64)
    return decode(model, prompt_ids, max_new_tokens)
'''

DECODE = ("decode",)
DECODE_CASES = [
    GamingCase("warmup_cache", DECODE, WARMUP_CACHE, "pass_isolation", "no_gain"),
    GamingCase("keeps_state_across_passes", DECODE, KEEPS_STATE, "pass_isolation", "no_gain"),
    GamingCase("replays_answers", DECODE, REPLAYS_ANSWERS, "host_computes_metric", "no_gain"),
    GamingCase("wrong_when_timed", DECODE, WRONG_WHEN_TIMED, "host_computes_metric", "no_gain"),
    GamingCase("patches_timer", DECODE, PATCHES_TIMER, "paired_timing", "invalid",
               message="replaced time.perf_counter"),
    GamingCase("patches_clock_quietly", DECODE, PATCHES_CLOCK_QUIETLY, "paired_timing", "no_gain"),
    GamingCase("out_of_range_ids", DECODE, OUT_OF_RANGE_IDS, "host_computes_metric", "invalid",
               message="outside [0, 256)"),
    GamingCase("extra_threads", DECODE, EXTRA_THREADS, "resources_enforced", "no_gain"),
]


def no_gain(result, honest) -> str:
    """Why `result` (a gaming case's, status ok) gained over `honest` (the twin's), or "" when it did not: its
    speed-up interval lies above the twin's, with greedy's output, or it found what it must not have found."""
    found = [int(n) for n in re.findall(r"GAMING found=(\d+)", result.log_tail)]
    if any(found):
        return f"the trick found what it looked for inside the sandbox: {found}"
    m, h = result.metrics, honest.metrics
    if m["mismatch_rate"] > 0:                    # not greedy's text: infeasible under the default objective
        return ""
    if m["speedup_ci_low"] > h["speedup_ci_high"]:
        return (f"speed-up {m['speedup']:.2f} [{m['speedup_ci_low']:.2f}, {m['speedup_ci_high']:.2f}] lies above the "
                f"honest twin's {h['speedup']:.2f} [{h['speedup_ci_low']:.2f}, {h['speedup_ci_high']:.2f}]")
    return ""
