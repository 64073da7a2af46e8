"""The evaluator-gaming suite on `lm` (`tests/gaming_cases.py`'s tricks, adapted to its log-prob contract).

Each candidate is the honest tiny model of `tests/test_lm_task.py` with a trick that runs only when it is scored
(eval mode, no gradients) or at import, run as a real `short` job through the harness in the process sandbox, on
the default secret corpus and on a prepared directory:
- held-out data out of reach: reading the host's secret and running the task's own held-out draw, reading
  `val.bin` off disk (or rebuilding the synthetic corpus) and looking each prefix's next token up: both find
  nothing and score no better than the honest model;
- the host computes the metric: a patched report writer, forged report and predictions, a patched scorer,
  pickled predictions, NaN, a wrong shape, unnormalised log-probs;
- causality on the scored batch: a model that reads token t + 1 only when scored is refused by the twin check.
`test_the_lookup_wins_where_nothing_stops_it` runs the lookup on the host to show the trick is real.
Docker is not run here (its hiding is the backend's, covered for every task by `tests/test_gaming_conformance.py`).
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from archlab.prepare_data import prepare
from evaluators import heldout
from evaluators.harness import evaluate
from evaluators.tasks import get_task
from evaluators.tasks.lm import CAUSALITY_RULE
from sandbox.process import ProcessSandbox
from tests.eval_support import load_source
from tests.test_lm_task import TINY_CAUSAL, english
from wire.jobs import EvalJob, Limits

pytestmark = pytest.mark.timeout(600)
NO_GAIN_MARGIN = 0.05      # bits per byte; a lookup that worked scores near 0
_ids = itertools.count()

HONEST = TINY_CAUSAL.replace("import torch\n", "import os, sys\nimport numpy as np\nimport torch\n", 1).replace(
    '''        return self.out(self.norm(h))''', '''        logits = self.out(self.norm(h))
        if not self.training and not torch.is_grad_enabled():
            logits = game(self, x, logits)
        return logits''').replace('''def build_model(spec):
    return Model(spec)''', '''def game(model, x, logits):
    return logits


def build_model(spec):
    model = Model(spec)
    model.spec = spec
    return model''')

# causal lookup: at each position, the token that followed the last 16 tokens where `steal` finds them in its text
LOOKUP = '''
_text = None
KEY = 16


def prefix_lookup(text, row):
    """Next token after each position's last KEY tokens of `row`, found in `text` (uint16 array), or -1."""
    raw = text.astype("<u2").tobytes()
    out = []
    for t in range(len(row)):
        at = -1
        if t >= KEY - 1:
            key = np.asarray(row[t - KEY + 1:t + 1]).astype("<u2").tobytes()
            at = raw.find(key)
            while at >= 0 and at % 2:
                at = raw.find(key, at + 1)
        end = at // 2 + KEY
        out.append(int(text[end]) if at >= 0 and end < len(text) else -1)
    return out


def game(model, x, logits):
    global _text
    if _text is None:
        try:
            _text = np.asarray(steal(model.spec), dtype=np.uint16)
        except Exception as exc:                               # noqa: BLE001
            _text = np.zeros(0, np.uint16)
            print("GAMING refused:", type(exc).__name__, str(exc)[:200], flush=True)
    found = 0
    logits = logits.clone()
    for i in range(x.shape[0]):
        for t, answer in enumerate(prefix_lookup(_text, x[i].cpu().numpy()) if len(_text) else []):
            if answer >= 0:
                found += 1
                logits[i, t, answer] = logits[i, t].max() + 8.0
    print(f"GAMING found={found}", flush=True)
    return logits
'''

STEAL_SECRET = HONEST + LOOKUP + '''

def steal(spec):
    key = open("HOST_SECRETS/heldout.key", "rb").read()
    os.environ["HOME"] = "HOST_HOME"
    from evaluators.tasks import get_task
    inputs, targets = get_task("lm").heldout(spec.at("short"), key)
    return np.concatenate([np.concatenate([r[:1], t[:-2]]) for r, t in zip(inputs["tokens"], targets)])
'''

READ_HELDOUT = HONEST + LOOKUP + '''

def steal(spec):
    if spec.data["data"] == "synthetic":                        # rebuild the corpus where it is cached
        os.environ["HOME"] = "HOST_HOME"
        from evaluators.tasks.charlm import synthetic_corpus
        return np.frombuffer(synthetic_corpus(int(spec.data["corpus_bytes"])), np.uint8)
    return np.fromfile(os.path.join(spec.data["data"], "val.bin"), dtype=np.uint16)
'''

_FORGE_REPORT = HONEST + '''

def _forge(original):
    def write(out, report):
        report.setdefault("metrics", {}).update(bits_per_byte=0.0, heldout_loss=0.0)
        original(out, report)
    return write


for _name in ("__main__", "sandbox.runner"):
    _module = sys.modules.get(_name)
    if _module is not None and hasattr(_module, "_write_report"):
        _module._write_report = _forge(_module._write_report)
'''

FORGE_FILES = HONEST + '''
import json
_job = json.loads(open(sys.argv[1]).read())
if _job["fidelity"] == "short":
    np.save(os.path.join(sys.argv[3], "predictions.npy"), np.full(SHAPE, -np.log(SHAPE[-1]), np.float32))
    with open(os.path.join(sys.argv[3], "report.json"), "w") as handle:
        json.dump({"status": "ok", "metrics": {"bits_per_byte": 0.0, "heldout_loss": 0.0}}, handle)
    os._exit(0)
'''

PATCH_SCORER = HONEST + '''
import evaluators.tasks.lm as _lm
_lm.LM.score = lambda self, spec, predictions, targets: {"bits_per_byte": 0.0, "heldout_loss": 0.0}
_lm.LM.judge = lambda self, job, result, jobdir, kept, wall: result
'''

FORGE_PICKLE = HONEST + '''
import json
_job = json.loads(open(sys.argv[1]).read())
if _job["fidelity"] == "short":
    np.save(os.path.join(sys.argv[3], "predictions.npy"), np.array([{"bits_per_byte": 0.0}], dtype=object),
            allow_pickle=True)
    with open(os.path.join(sys.argv[3], "report.json"), "w") as handle:
        json.dump({"status": "ok", "metrics": {}}, handle)
    os._exit(0)
'''

NAN_WHEN_SCORED = HONEST + '''

def game(model, x, logits):
    return logits * float("nan") if x.shape[0] > 8 else logits
'''

WRONG_SHAPE = HONEST + '''

def game(model, x, logits):
    return logits[:, :-1] if x.shape[0] > 8 else logits
'''

UNNORMALISED = HONEST + '''
import evaluators.tasks.lm as _lm
_predict = _lm.LM.predict
_lm.LM.predict = lambda self, model, inputs: _predict(self, model, inputs) + 3.0
'''

PEEK_WHEN_SCORED = HONEST + '''

def game(model, x, logits):
    if x.shape[0] <= 8:
        return logits
    peeked = logits.clone()
    peeked[:, :-1] += 50.0 * torch.nn.functional.one_hot(x[:, 1:], logits.shape[-1]).float()
    return peeked
'''

# (name, source, expect, message): "no_gain" = ok and no better than honest; "invalid" = refused, message named
CASES = [
    ("steal_secret", STEAL_SECRET, "no_gain", "GAMING refused"),
    ("read_heldout", READ_HELDOUT, "no_gain", "GAMING refused"),
    ("patch_evaluator", _FORGE_REPORT, "no_gain", ""),
    # forged predictions and report, but no outputs for the downstream suite: the whole job is refused
    ("forge_files", FORGE_FILES, "invalid", "suite_outputs"),
    ("patch_scorer", PATCH_SCORER, "no_gain", ""),
    ("forge_pickle", FORGE_PICKLE, "invalid", "plain array"),
    ("nan_when_scored", NAN_WHEN_SCORED, "invalid", "NaN or inf"),
    ("wrong_shape", WRONG_SHAPE, "invalid", "shape"),
    ("unnormalised", UNNORMALISED, "invalid", "normalised"),
    ("peek_when_scored", PEEK_WHEN_SCORED, "invalid", CAUSALITY_RULE),
]
SPECS = ("synthetic", "prepared")


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    directory = prepare(english(tmp_path_factory.mktemp("lm-gaming") / "text.txt", 4000), "byte",
                        tmp_path_factory.mktemp("lm-gaming-data") / "byte")
    task = get_task("lm")
    return {"synthetic": task.default_spec(heldout_windows=24, short_steps=40),
            "prepared": task.default_spec(data=str(directory), heldout_windows=24, short_steps=40)}


@pytest.fixture(scope="module")
def sandbox():
    box = ProcessSandbox()
    missing = {"hidden_home", "hidden_paths"} - set(box.capabilities)
    if missing:
        from tests.conftest import under_ci
        if under_ci():
            pytest.fail(f"under CI the lm gaming suite must run: the process backend lacks {missing}")
        pytest.skip(f"the process backend lacks {missing} on this machine")
    return box


def _source(source: str, spec) -> str:
    shape = get_task("lm").expected_prediction_shape(spec.at("short"))
    return (source.replace("HOST_SECRETS", str(heldout.secrets_dir())).replace("HOST_HOME", str(Path.home()))
            .replace("SHAPE", repr(tuple(shape))))


def _run(sandbox, spec, source: str, tmp_path: Path):
    job = EvalJob(job_id=f"lmg{next(_ids)}", candidate_id="gaming", source=_source(source, spec), task=spec,
                  fidelity="short", limits=Limits(wall_seconds=120, memory_mb=3072, cpus=1))
    return evaluate(sandbox, job, tmp_path / job.job_id)


@pytest.fixture(scope="module")
def honest(sandbox, specs, tmp_path_factory):
    scores = {}
    for name, spec in specs.items():
        result = _run(sandbox, spec, HONEST, tmp_path_factory.mktemp(f"honest-{name}"))
        assert result.status == "ok", result.message
        scores[name] = result.metrics["bits_per_byte"]
    return scores


# the host's refusals do not depend on the data: they run once, on the default corpus; the no-gain cases on both
PARAMS = [pytest.param(spec_name, *case, id=f"{spec_name}-{case[0]}") for case in CASES for spec_name in SPECS
          if case[2] == "no_gain" or spec_name == "synthetic"]


@pytest.mark.parametrize("spec_name, name, source, expect, message", PARAMS)
def test_gaming_case_is_stopped(sandbox, specs, honest, spec_name, name, source, expect, message, tmp_path):
    result = _run(sandbox, specs[spec_name], source, tmp_path)
    log = result.log_tail
    if expect == "invalid":
        assert result.status in ("invalid", "error"), (result.status, result.message)
        assert message in result.message, result.message
        assert "bits_per_byte" not in result.metrics
        return
    assert result.status == "ok", (result.status, result.message, log[-2000:])
    assert result.metrics["bits_per_byte"] >= honest[spec_name] - NO_GAIN_MARGIN, (result.metrics, honest)
    found = [int(n) for n in re.findall(r"GAMING found=(\d+)", log)]
    assert not any(found), f"the trick found held-out answers inside the sandbox: {found}"
    if message:
        assert message in log, log[-2000:]


def test_the_lookup_wins_where_nothing_stops_it(specs):
    """Run on the host, outside any sandbox, the prefix lookup on val.bin scores far below the honest model."""
    spec = specs["prepared"]
    task = get_task("lm")
    instance = spec.at("short")
    inputs, targets = task.heldout(instance, heldout.machine_secret())
    cheat = load_source(_source(READ_HELDOUT, spec), "lm_read_heldout")
    import torch
    torch.manual_seed(0)
    plain = task.score(instance, task.predict(cheat.build_model(instance).eval(), inputs).astype(np.float64),
                       targets)["bits_per_byte"]
    cheat.steal = lambda spec: np.zeros(0, np.uint16)          # the same untrained model without the lookup
    torch.manual_seed(0)
    cheat._text = np.zeros(0, np.uint16)
    without = task.score(instance, task.predict(cheat.build_model(instance).eval(), inputs).astype(np.float64),
                         targets)["bits_per_byte"]
    assert plain < without - 2.0, (plain, without)
