"""The evaluator-gaming suite against a task from outside archlab: `csvreg`, from an installed package.

The harness's integrity rules hold for every task, shipped or not (DESIGN.md, "Scores that
cannot be gamed"). This module holds the installed CSV regression task
(`tests/fixtures/archlab_csvtask`, installed by `tests/plugin_support.py`) to them with the
tricks of `tests/gaming_cases.py`, adapted to its contract (standardised features `[B, F]` to
predictions `[B, 1]`), as real jobs through the harness in a warm sandbox of each backend:
- held-out data out of reach: a candidate that reads the host's secret and runs the task's
  own held-out draw, and one that finds the package's CSV file (through importlib.resources,
  the package's module, the spec's path, a search of site-packages) and looks each held-out
  row's target up by its features, both find nothing and score no better than the honest
  model (the same network without the trick);
- the host computes the metric: a patched report writer, forged report and predictions,
  pickled predictions, NaN or wrongly shaped predictions when scored, metrics out of range;
- the contract: a model that mixes rows across the batch is refused at `check`.
`test_the_csv_tricks_do_win_where_nothing_stops_them` runs the two lookup tricks on the host,
outside any sandbox, to show they are real.

Docker runs the backend's own rule (held-out data out of reach), plus one case the process
backend cannot stop and therefore does not run: reading another copy of the table, the
package's source in archlab's own tests, which the process backend leaves readable (it hides
homes and declared paths, not the project tree: `sandbox.process`) and docker never mounts.
A capability a backend lacks is declared and the case that needs it skips saying so; under CI
nothing skips.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from evaluators import heldout
from evaluators.harness import evaluate
from tests import gaming_cases
from tests.gaming_cases import sandboxes, warm_sandbox as _sandbox  # noqa: F401 - a fixture, found by name
from tests.conftest import under_ci
from tests.eval_support import load_source
from tests.plugin_support import FIXTURE, installed_csvtask
from wire.jobs import EvalJob, Limits

pytestmark = pytest.mark.timeout(600)
NO_GAIN_MARGIN = 0.02      # r2; a lookup that worked scores 1.0, the honest linear model about 0.7
_ids = itertools.count()

# the honest model (a linear layer: the task's floor, far below what a lookup scores); `game` runs only when it is
# scored (eval mode, no gradients), as in tests/gaming_cases.py, whose tricks are re-used on it below
HONEST = '''
import os, sys
import numpy as np
import torch

INPUTS_DIR = sys.argv[2] if len(sys.argv) > 2 else ""      # the runner's argv: JOB_JSON INPUTS_DIR OUT_DIR


class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.net = torch.nn.Linear(int(spec.data["features"]), 1)

    def forward(self, x):
        out = self.net(x)
        if not self.training and not torch.is_grad_enabled():
            out = game(self, x, out)
        return out


def game(model, x, out):
    return out


def build_model(spec):
    return Model(spec)
'''

# every lookup trick answers through `answers_for(spec)`: a function from a row of features to its target, or None
LOOKUP = '''
_answer = None


def game(model, x, out):
    global _answer
    if _answer is None:
        try:
            _answer = answers_for(model.spec)
        except Exception as exc:                                  # noqa: BLE001
            _answer = lambda row: None
            print("GAMING refused:", type(exc).__name__, str(exc)[:300], flush=True)
    out = out.clone()
    found = 0
    for i in range(x.shape[0]):
        answer = _answer(x[i].cpu().numpy())
        if answer is not None:
            found += 1
            out[i] = answer
    print(f"GAMING found={found}", flush=True)
    return out
'''

# the host's secret read from the host's home, then the task's own held-out draw run with it
STEAL_SECRET = HONEST + LOOKUP + '''

def answers_for(spec):
    key = open("HOST_SECRETS/heldout.key", "rb").read()
    from evaluators.tasks import get_task
    inputs, targets = get_task(spec.name).heldout(spec.at("short"), key)
    table = {row.astype(np.float32).tobytes(): float(t) for row, t in zip(inputs["features"], targets)}
    return lambda row: table.get(row.astype(np.float32).tobytes())
'''

# the package's table, found wherever a candidate would look for it, and each held-out row looked up in it: the job's
# rows (training and held-out features, standardised alike) are matched to the table's by their own standardisation,
# and the table's targets mapped to standard units by the training rows' (a least-squares line)
READ_CSV = HONEST + LOOKUP + '''
ELSEWHERE = []


def find_table(spec):
    import glob, importlib.resources, site, sysconfig
    places = [str(spec.data.get("csv", ""))]
    try:
        places.append(str(importlib.resources.files("archlab_csvtask") / "data" / "regression.csv"))
        import archlab_csvtask.task
        places.append(archlab_csvtask.task.SHIPPED_CSV)
    except Exception as exc:                                      # noqa: BLE001
        print("GAMING no package:", exc, flush=True)
    for root in {sysconfig.get_paths()["purelib"], *site.getsitepackages()}:
        places += glob.glob(os.path.join(root, "archlab_csvtask*", "**", "*.csv"), recursive=True)
    places += [p for pattern in ELSEWHERE for p in glob.glob(pattern, recursive=True)]
    for place in places:
        try:
            with open(place) as handle:
                text = handle.read()
        except OSError:
            continue
        if text.strip():
            return text
    raise FileNotFoundError(f"no readable copy of the table in {sorted(set(places))}")


def answers_for(spec):
    rows = [line.split(",") for line in find_table(spec).strip().splitlines()]
    header, table = rows[0], np.array(rows[1:], dtype=np.float64)
    column = header.index(str(spec.data["target"]))
    raw_x, raw_y = np.delete(table, column, axis=1), table[:, column]
    train_x = np.load(os.path.join(INPUTS_DIR, "train_features.npy")).astype(np.float64)
    train_y = np.load(os.path.join(INPUTS_DIR, "train_targets.npy")).astype(np.float64)
    held_x = np.load(os.path.join(INPUTS_DIR, "heldout_features.npy")).astype(np.float64)
    every = np.concatenate([train_x, held_x])                  # all the table's rows, in the job's units
    table_n = (raw_x - raw_x.mean(0)) / raw_x.std(0)
    mean, std = every.mean(0), every.std(0)

    def nearest(row):
        distance = ((table_n - (np.asarray(row, np.float64) - mean) / std) ** 2).sum(1)
        return int(distance.argmin()), float(distance.min())

    slope, intercept = np.polyfit(raw_y[[nearest(r)[0] for r in train_x]], train_y, 1)

    def answer(row):
        index, distance = nearest(row)
        return slope * raw_y[index] + intercept if distance < 1e-4 else None
    return answer
'''
# ... and also the copy of the package's source in archlab's tests, which only a backend that hides the project finds
READ_ANY_COPY = READ_CSV.replace("ELSEWHERE = []", f"ELSEWHERE = [{str(FIXTURE / '**' / '*.csv')!r}]")

WRONG_SHAPE_WHEN_SCORED = HONEST + '''

def game(model, x, out):
    return out.repeat(1, 2) if x.shape[0] > 8 else out
'''

MIX_BATCH = HONEST + '''
_forward = Model.forward


def _centred(self, x):
    return _forward(self, x - x.mean(0, keepdim=True))


Model.forward = _centred
'''


def _on_tabular(shipped: str, **replace: str) -> str:
    """A trick of tests/gaming_cases.py, on the tabular honest model instead of the shipped tasks' one."""
    assert shipped.startswith(gaming_cases.HONEST), "tests/gaming_cases.py changed how its cases are built"
    source = HONEST + shipped[len(gaming_cases.HONEST):]
    for old, new in replace.items():
        source = source.replace(old, new)
    return source


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    rule: gaming_cases.Rule
    expect: gaming_cases.Expect
    message: str = ""
    backends: tuple[str, ...] = ("process",)


OUT_OF_REACH = ("process", "docker")
CASES = [
    Case("steal_secret", STEAL_SECRET, "heldout_out_of_reach", "no_gain", "GAMING refused", OUT_OF_REACH),
    Case("read_installed_csv", READ_CSV, "heldout_out_of_reach", "no_gain", "GAMING refused", OUT_OF_REACH),
    Case("read_any_copy", READ_ANY_COPY, "heldout_out_of_reach", "no_gain", "GAMING refused", ("docker",)),
    Case("patch_evaluator", _on_tabular(gaming_cases._FORGE_REPORT, METRICS="dict(r2=1.0, heldout_loss=0.0)"),
         "host_computes_metric", "no_gain"),
    Case("forge_files", _on_tabular(gaming_cases.FORGE_FILES), "host_computes_metric", "no_gain"),
    Case("forge_pickle", _on_tabular(gaming_cases.FORGE_PICKLE), "host_computes_metric", "invalid", "plain array"),
    Case("nan_when_scored", _on_tabular(gaming_cases.NAN_WHEN_SCORED), "host_computes_metric", "invalid",
         "NaN or inf"),
    Case("wrong_shape_when_scored", WRONG_SHAPE_WHEN_SCORED, "host_computes_metric", "invalid",
         "predictions have shape"),
    Case("out_of_range_report", _on_tabular(gaming_cases.OUT_OF_RANGE), "host_computes_metric", "invalid",
         "in range"),
    Case("mix_batch", MIX_BATCH, "contract_checked", "invalid", "samples mix across the batch"),
]


@pytest.fixture(scope="module")
def spec():
    with installed_csvtask():
        from evaluators.tasks import get_task
        yield get_task("csvreg").default_spec(short_steps=100)


def _need(sandbox, capability: str) -> None:
    if capability not in sandbox.capabilities:
        message = f"the {sandbox.name} backend declares no {capability!r} on this machine"
        if under_ci():
            pytest.fail(f"under CI every gaming case must run: {message}")
        pytest.skip(message)


def _run(sandbox, spec, source: str, tmp_path: Path):
    job = EvalJob(job_id=f"p{next(_ids)}", candidate_id="gaming", source=source, task=spec, fidelity="short",
                  limits=Limits(wall_seconds=120, memory_mb=3072, cpus=1))
    return evaluate(sandbox, job, tmp_path / job.job_id), tmp_path / job.job_id


def _source(source: str, spec) -> str:
    return (source.replace("HOST_SECRETS", str(heldout.secrets_dir()))
            .replace("SHAPE", repr((spec.at("short").heldout_size,))))


@pytest.fixture(scope="module")
def honest_scores():
    return {}


def _honest(request, backend: str, spec, tmp_path: Path) -> float:
    scores = request.getfixturevalue("honest_scores")
    if backend not in scores:
        result, _ = _run(_sandbox(request, backend), spec, HONEST, tmp_path)
        assert result.status == "ok", result.message
        scores[backend] = result.metrics["r2"]
    return scores[backend]


@pytest.mark.parametrize("backend, case", [
    pytest.param(backend, case, id=f"{backend}-csvreg-{case.name}",
                 marks=[pytest.mark.docker] if backend == "docker" else [])
    for case in CASES for backend in case.backends])
def test_gaming_case_on_the_installed_task_is_stopped_by_its_rule(request, backend, case, spec, tmp_path):
    sandbox = _sandbox(request, backend)
    for capability in ("hidden_home", "hidden_paths") if case.rule == "heldout_out_of_reach" else ():
        _need(sandbox, capability)
    result, jobdir = _run(sandbox, spec, _source(case.source, spec), tmp_path)
    log = result.log_tail
    if case.expect == "invalid":
        assert result.status in ("invalid", "error"), (result.status, result.message)
        assert case.message in result.message, result.message
        assert "r2" not in result.metrics
        return
    assert result.status == "ok", (result.status, result.message, log[-2000:])
    honest = _honest(request, backend, spec, tmp_path)
    assert result.metrics["r2"] <= honest + NO_GAIN_MARGIN, (result.metrics, honest, log[-2000:])
    found = [int(n) for n in re.findall(r"GAMING found=(\d+)", log)]
    if LOOKUP in case.source:      # the trick ran when the model was scored, and found nothing
        assert found, f"the lookup never ran when the model was scored: {log[-2000:]}"
    assert not any(found), f"the trick found held-out answers inside the sandbox: {found}"
    if case.message:
        assert case.message in log, log[-2000:]
    if case.name == "patch_evaluator":        # the forged number was written, and not believed
        claimed = json.loads((jobdir / "out" / "report.json").read_text())["metrics"]
        assert claimed["r2"] == 1.0 and result.metrics["r2"] < 1.0


@pytest.mark.parametrize("trick", ["steal_secret", "read_installed_csv"])
def test_the_csv_tricks_do_win_where_nothing_stops_them(trick, spec, tmp_path):
    """Run on the host, outside any sandbox, each lookup finds every held-out target: a `no_gain` above is the
    sandbox and the secret at work, not a trick that never worked."""
    from evaluators.tasks import get_task
    task = get_task("csvreg")
    instance = spec.at("short")
    inputs, targets = task.heldout(instance, heldout.machine_secret())
    for name, array in task.sandbox_files(instance).items():       # the job's files, as the harness writes them
        np.save(tmp_path / f"train_{name}.npy", array)
    np.save(tmp_path / "heldout_features.npy", inputs["features"])
    cheat = load_source(_source(next(c.source for c in CASES if c.name == trick), spec), f"cheat_{trick}")
    cheat.INPUTS_DIR = str(tmp_path)
    answer = cheat.answers_for(instance)
    predictions = np.array([answer(row) for row in inputs["features"]], dtype=np.float64)
    assert task.score(instance, predictions, targets)["r2"] > 0.999
