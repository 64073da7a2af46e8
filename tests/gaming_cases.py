"""Evaluator-gaming candidates: each tries to raise its score without doing the task.

`tests/hostile_cases.py` attacks the host (escape, hog, crash); these attack the *evaluator*: they
read held-out data, regenerate it, keep state between passes, behave differently when scored
than when checked, patch the evaluator, forge what they write, or take more CPU than they were
given. Each case names the rule of the harness that must stop it (`Rule`) and what stopping
looks like (`Expect`): a classified result with a message that names the rule, or a score no
better than the honest reference gets. `tests/test_gaming_conformance.py` runs every case on
every task it applies to and on both sandbox backends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from tests.hostile_cases import CPU_QUOTA_PROBE

# the harness's integrity rules (DESIGN.md, "Scores that cannot be gamed"); a case names the one that stops it
Rule = Literal[
    "heldout_out_of_reach",     # held-out targets are neither readable nor recomputable inside the sandbox
    "host_computes_metric",     # the sandbox returns predictions; the host scores them, validated first
    "pass_isolation",           # a timed pass sees its inputs only when it starts and keeps nothing after
    "paired_timing",            # the host times reference and candidate pass by pass on the same inputs
    "resources_enforced",       # CPU (and memory, pids) allowances are enforced, not requested
    "contract_checked",         # causality and batch independence, on the check batch
]
# "invalid": status invalid (or error) whose message names the rule; "no_gain": status ok, score no better than
# the honest twin's; "capped": the job got no more CPU than its allowance
Expect = Literal["invalid", "no_gain", "capped"]


@dataclass(frozen=True)
class GamingCase:
    name: str                  # test id
    tasks: tuple[str, ...]     # the tasks it applies to
    source: str                # the candidate module (the task's entry point, gamed)
    rule: Rule
    expect: Expect
    fidelity: str = "short"
    message: str = ""          # for expect="invalid": a substring the result's message must contain


# --- the candidates ------------------------------------------------------------------------------------------
# One honest model for every task (an embedding for token tasks, a linear layer for images); each case replaces
# `game` (called only when the model is scored: eval mode, no gradients) or adds code that runs at import.
HONEST = '''
import os, sys
import numpy as np
import torch


class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        if spec.family == "vision":
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, spec.num_classes))
        else:
            self.net = torch.nn.Sequential(torch.nn.Embedding(spec.vocab_size, 32), torch.nn.Tanh(),
                                           torch.nn.Linear(32, spec.vocab_size))

    def forward(self, x):
        logits = self.net(x)
        if not self.training and not torch.is_grad_enabled():
            logits = game(self, x, logits)
        return logits


def game(model, x, logits):
    return logits


def build_model(spec):
    return Model(spec)
'''

# a table {input row: [(position or None, answer)]} and the logits that read it back: how every lookup cheat answers
LOOKUP = '''
def key_of(row):
    row = np.asarray(row)
    return row.astype(np.float32).tobytes() if row.dtype.kind == "f" else row.astype(np.uint8).tobytes()


def lookup_table(inputs, answers):
    table = {}
    if "positions" in inputs:                                  # mqar: answers at the query positions
        for row, pos, ans in zip(inputs["tokens"], inputs["positions"], answers):
            table[key_of(row)] = list(zip(pos.tolist(), np.asarray(ans).tolist()))
    elif "tokens" in inputs:                                   # charlm: the byte after each window
        T = inputs["tokens"].shape[-1]
        for row, ans in zip(inputs["tokens"].reshape(-1, T), np.asarray(answers).reshape(-1)):
            table[key_of(row)] = [(T - 1, int(ans))]
    else:                                                      # digits: the label of each image
        for image, ans in zip(inputs["images"], answers):
            table[key_of(image)] = [(None, int(ans))]
    return table


def text_table(text, T):
    return {text[i:i + T]: [(T - 1, text[i + T])] for i in range(len(text) - T)}


_table = None


def game(model, x, logits):
    global _table
    if _table is None:
        try:
            _table = lookup_table(*steal(model.spec)) if not TEXT else text_table(steal(model.spec), model.spec.seq_len)
        except Exception as exc:                               # noqa: BLE001
            _table = {}
            print("GAMING refused:", type(exc).__name__, str(exc)[:200], flush=True)
    found = 0
    logits = logits.clone()
    for i in range(x.shape[0]):
        for pos, ans in _table.get(key_of(x[i].cpu().numpy()), []):
            found += 1
            if pos is None:
                logits[i] = -50.0
                logits[i, ans] = 50.0
            else:
                logits[i, pos] = -50.0
                logits[i, pos, ans] = 50.0
    print(f"GAMING found={found}", flush=True)
    return logits
'''

# the host's secret read straight from the host's home, then the task's own held-out draw run with it
STEAL_SECRET = HONEST + LOOKUP + '''
TEXT = False


def steal(spec):
    key = open("HOST_SECRETS/heldout.key", "rb").read()
    os.environ["HOME"] = "HOST_HOME"                       # so the task finds the host's corpus cache too
    from evaluators.tasks import get_task
    return get_task(spec.name).heldout(spec.at("short"), key)
'''

# the data a task's held-out set comes from, read from where it lives on disk (or rebuilt from what is readable)
READ_PUBLIC_DATA = HONEST + LOOKUP + '''
TEXT = False


def steal(spec):
    global TEXT
    if spec.family == "vision":
        from sklearn.datasets import load_digits               # the bundled data set, labels included
        digits = load_digits()
        return {"images": (digits.images.astype(np.float32) / 16.0)[:, None]}, digits.target
    if spec.data.get("corpus") == "synthetic":                 # the old default: the standard library's docstrings
        from evaluators.tasks.charlm import stdlib_corpus
        text = stdlib_corpus(int(spec.data["corpus_bytes"]))
    elif "corpus" in spec.data:
        text = open(spec.data["corpus"], "rb").read()          # the user's corpus file
    else:                                                      # mqar: the old public held-out seed, and others
        from evaluators.tasks.mqar import make_mqar
        inputs, answers = {"tokens": [], "positions": []}, []
        for public in [10_000_019 + spec.seed, spec.seed, *range(8)]:
            tokens, targets = make_mqar(spec.heldout_size, spec.vocab_size, spec.seq_len, int(spec.data["num_pairs"]),
                                        int(spec.data["num_queries"]), torch.Generator().manual_seed(public))
            query = targets != -100
            tokens[:, 1:][query[:, :-1]] = 0
            inputs["tokens"].append(tokens.numpy())
            inputs["positions"].append(query.nonzero()[:, 1].reshape(len(tokens), -1).numpy())
            answers.append(targets[query].reshape(len(tokens), -1).numpy())
        return {k: np.concatenate(v) for k, v in inputs.items()}, np.concatenate(answers)
    TEXT = True
    return text
'''

# looks at later tokens only when scored (the check batch is small); the held-out inputs never hold the answers
PEEK_WHEN_SCORED = HONEST + '''

def game(model, x, logits):
    if x.shape[0] <= 8 or x.dim() != 2:
        return logits
    peeked = logits.clone()
    peeked[:, :-1] += 50.0 * torch.nn.functional.one_hot(x[:, 1:], logits.shape[-1]).float()
    return peeked
'''

# patches the runner's report writer (in the runner's module, whatever name it runs under) to add METRICS
_FORGE_REPORT = HONEST + '''

def _forge(original):
    def write(out, report):
        report.setdefault("metrics", {}).update(METRICS)
        original(out, report)
    return write


for _name in ("__main__", "sandbox.runner"):
    _module = sys.modules.get(_name)
    if _module is not None and hasattr(_module, "_write_report"):
        _module._write_report = _forge(_module._write_report)
'''
# ... so that the report claims a perfect score
PATCH_EVALUATOR = _FORGE_REPORT.replace("METRICS", "dict(accuracy=1.0, heldout_loss=0.0)")

# writes its own report and predictions before training, then leaves
FORGE_FILES = HONEST + '''
import json
_job = json.loads(open(sys.argv[1]).read())
if _job["fidelity"] == "short":
    _out = sys.argv[3]
    _shape = SHAPE
    np.save(os.path.join(_out, "predictions.npy"), np.zeros(_shape, np.float32))
    with open(os.path.join(_out, "report.json"), "w") as handle:
        json.dump({"status": "ok", "metrics": {"accuracy": 1.0, "heldout_loss": 0.0}}, handle)
    os._exit(0)
'''

# writes predictions the host would have to unpickle
FORGE_PICKLE = HONEST + '''
import json
_job = json.loads(open(sys.argv[1]).read())
if _job["fidelity"] == "short":
    np.save(os.path.join(sys.argv[3], "predictions.npy"), np.array([{"accuracy": 1.0}], dtype=object),
            allow_pickle=True)
    with open(os.path.join(sys.argv[3], "report.json"), "w") as handle:
        json.dump({"status": "ok", "metrics": {}}, handle)
    os._exit(0)
'''

# NaN when scored: a NaN that maxes a fitness must not become a score
NAN_WHEN_SCORED = HONEST + '''

def game(model, x, logits):
    return logits * float("nan") if x.shape[0] > 8 else logits
'''

# claims metrics out of range (a cost of -1 parameters, infinite FLOPs) in its report
OUT_OF_RANGE = _FORGE_REPORT.replace("METRICS", "dict(params=-1.0, flops=float('inf'))")

# more threads than it was given, busy in native code: the CPU it gets per wall second is what the job allows
EXTRA_THREADS = HONEST + CPU_QUOTA_PROBE + '''
import resource, threading, time
torch.set_num_threads(8)
_a = np.random.default_rng(0).random((400, 400))
_stop = time.monotonic() + 3.0
def _spin():
    while time.monotonic() < _stop:
        _a @ _a
_usage = resource.getrusage(resource.RUSAGE_SELF)
_cpu0, _wall0 = _usage.ru_utime + _usage.ru_stime, time.monotonic()
_threads = [threading.Thread(target=_spin) for _ in range(8)]
for _t in _threads:
    _t.start()
for _t in _threads:
    _t.join()
_usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"GAMING cpu_ratio={(_usage.ru_utime + _usage.ru_stime - _cpu0) / (time.monotonic() - _wall0):.3f}", flush=True)
print(f"GAMING quota={quota()}", flush=True)
'''

ALL = ("mqar", "charlm", "digits")
SEQUENCE = ("mqar", "charlm")
CASES = [
    GamingCase("steal_secret", ALL, STEAL_SECRET, "heldout_out_of_reach", "no_gain", message="GAMING refused"),
    GamingCase("read_public_data", ALL, READ_PUBLIC_DATA, "heldout_out_of_reach", "no_gain"),
    GamingCase("peek_when_scored", SEQUENCE, PEEK_WHEN_SCORED, "heldout_out_of_reach", "no_gain"),
    GamingCase("patch_evaluator", ALL, PATCH_EVALUATOR, "host_computes_metric", "no_gain"),
    GamingCase("forge_files", ALL, FORGE_FILES, "host_computes_metric", "no_gain"),
    GamingCase("forge_pickle", ALL, FORGE_PICKLE, "host_computes_metric", "invalid", message="plain array"),
    GamingCase("nan_when_scored", ALL, NAN_WHEN_SCORED, "host_computes_metric", "invalid", message="NaN or inf"),
    GamingCase("out_of_range_report", ALL, OUT_OF_RANGE, "host_computes_metric", "invalid", message="in range"),
    GamingCase("extra_threads", ALL, EXTRA_THREADS, "resources_enforced", "capped"),
]


@pytest.fixture(scope="module")
def sandboxes():
    """The warm sandboxes of one test module, by backend; closed when the module is done."""
    made: dict = {}
    yield made
    for sandbox in made.values():
        sandbox.close()


def warm_sandbox(request, backend: str):
    """One warm sandbox per backend for the module (workers are one-shot: no job sees another's)."""
    from sandbox.warm import WarmSandbox
    made = request.getfixturevalue("sandboxes")
    if backend not in made:
        if backend == "process":
            base = request.getfixturevalue("process_sandbox")
        elif backend == "process-exec":
            from sandbox.process import ProcessSandbox
            base = ProcessSandbox(start="exec")
        else:
            from tests.docker_support import docker_sandbox_or_skip
            base = docker_sandbox_or_skip()
        made[backend] = WarmSandbox(base)
    return made[backend]
