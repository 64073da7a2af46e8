"""Tasks from outside archlab, end to end through the real CLI: an installed package's task and a task in a file.

- `csvreg`, regression on a CSV table, comes from a package installed into the project's
  environment for this module (`tests/fixtures/archlab_csvtask`, found through its entry point in
  the group `archlab.tasks`; `tests/plugin_support.py` installs it). It declares no search space,
  so it runs with `--llm openai`, against the strict fake endpoint on loopback: one plan, one
  module written for the task's contract, one analysis, and the run must ask for nothing else.
- `tests/fixtures/file_task.py:DelayedCopy`, a sequence task given as a file, declares the
  shipped `sequence-blocks` space, so it runs with both engines: the offline one searching that
  space, and `--llm openai` (a narrower softmax-attention model, the module of `tests/llm_support.py`).
What a user would notice is asserted: the run finishes, its candidates are scored with the
task's own metric, `archlab show` lists them, the run replays, and a wrong `--task` stops with
a message that says what exists or what the file lacks. The evaluator-gaming suite against the
installed task is `tests/test_gaming_plugin_task.py`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agents.llm.fake import Answer, FakeEndpoint
from tests.llm_support import KEY, fenced, module
from tests.llm_support import PLAN as LLM_PLAN
from tests.plugin_support import installed_csvtask
from tests.runs_support import ROOT, archlab, only_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

FILE_TASK = "tests/fixtures/file_task.py:DelayedCopy"
CSV_OPTIONS = {"short_steps": 100}
COPY_OPTIONS = {"short_steps": 40}
QUICK = {"ARCHLAB_LOOP__BATCH": "1", "ARCHLAB_LOOP__NOISE_SEEDS": "1"}   # one proposal, one run per baseline
PLAN = {"title": "a wider hidden layer", "hypothesis": "The target mixes a product of two features with a sine of "
        "another; a wider hidden layer fits both within the short budget.", "change_kind": "width",
        "change": "hidden width 64 -> 128", "expected_effect": "r2 up by a little at twice the parameters"}
WIDER_MLP = '''"""A wider two-layer perceptron over the standardised features."""
import torch


def build_model(spec):
    features = int(spec.data["features"])
    return torch.nn.Sequential(torch.nn.Linear(features, 128), torch.nn.GELU(), torch.nn.Linear(128, 1))
'''
ANALYSIS = {"summary": "The wider perceptron fit the held-out rows about as well as the baseline it came from.",
            "findings": [{"text": "Doubling the hidden width of the csvreg perceptron changed R^2 very little.",
                          "kind": "insight", "evidence": [{"metric": "r2", "value": 0.97}]}]}

COPY_ANALYSIS = {"summary": "The narrower attention model copied about as well as its parent.",
                 "findings": [{"text": "Narrowing d_model to 48 on delayed copy changed accuracy little.",
                               "kind": "insight", "evidence": [{"metric": "accuracy", "value": 0.3}]}]}


def _llm_env(fake: FakeEndpoint) -> dict[str, str]:
    return {"ARCHLAB_LLM__BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "ARCHLAB_LLM__PLANNER_MODEL": "planner-m",
            "ARCHLAB_LLM__CODER_MODEL": "coder-m", "ARCHLAB_LLM__ANALYST_MODEL": "analyst-m",
            "ARCHLAB_LLM__TIMEOUT_SECONDS": "30"}


@pytest.fixture(scope="module")
def csvtask():
    with installed_csvtask():
        yield


def _candidates(run_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (run_dir / "candidates").glob("*/candidate.json")}


@pytest.fixture(scope="module")
def csv_run(csvtask, tmp_path_factory):
    runs = tmp_path_factory.mktemp("csv-runs")
    answers = {"planner-m": [Answer.json(PLAN, expect="standardised features")],    # the task's contract, in words
               "coder-m": [Answer.text(fenced(WIDER_MLP, "Here is the wider perceptron."),
                                       expect="spec.data['features'] = 4")],
               "analyst-m": [Answer.json(ANALYSIS, expect="# The candidate: c001")]}
    with FakeEndpoint(answers) as fake:
        env = {**_llm_env(fake), "ARCHLAB_TASK_OPTIONS": json.dumps(CSV_OPTIONS), **QUICK}
        proc = archlab("run", "--task", "csvreg", "--rounds", "1", "--llm", "openai", "--runs-dir", str(runs),
                       extra_env=env, timeout=540)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return only_run(runs), proc.stdout


@pytest.fixture(scope="module", params=["offline", "openai"])
def file_run(request, tmp_path_factory):
    """The file task, searched by the offline engine in its space, or by a (fake) model writing a module."""
    runs = tmp_path_factory.mktemp(f"file-runs-{request.param}")
    env = {"ARCHLAB_TASK_OPTIONS": json.dumps(COPY_OPTIONS), **QUICK}
    args = ("run", "--task", FILE_TASK, "--llm", request.param, "--rounds", "1", "--runs-dir", str(runs))
    if request.param == "offline":
        proc = archlab(*args, extra_env=env, timeout=540)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        answers = {"planner-m": [Answer.json(LLM_PLAN, expect="must be causal")],
                   "coder-m": [Answer.text(fenced(module(48)), expect="spec.vocab_size = 16")],
                   "analyst-m": [Answer.json(COPY_ANALYSIS, expect="# The candidate: c001")]}
        with FakeEndpoint(answers) as fake:
            proc = archlab(*args, extra_env={**env, **_llm_env(fake)}, timeout=540)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    return request.param, only_run(runs), proc.stdout


# --- the installed package -------------------------------------------------------------------------------------
def test_the_installed_task_is_found_through_its_entry_point(csvtask):
    from evaluators.tasks import get_task, sources
    from evaluators.tasks.base import TaskOptionsError
    task = get_task("csvreg")
    assert type(task).__name__ == "CSVRegression"
    module_file = Path(sys.modules[type(task).__module__].__file__).resolve()
    assert module_file.is_relative_to(Path(sys.prefix).resolve()) and not module_file.is_relative_to(ROOT / "tests")
    source = next(s for s in sources() if s.ref == "csvreg")
    assert source.origin == "installed (archlab-csvtask)" and source.target == "archlab_csvtask.task:CSVRegression"
    spec = task.default_spec()
    assert spec.family == "tabular" and spec.data["features"] == 4 and spec.heldout_size == 80
    assert Path(str(spec.data["csv"])).is_relative_to(Path(sys.prefix).resolve())     # the copy in site-packages
    assert task.host_only_paths(spec) == (spec.data["csv"],)
    with pytest.raises(TaskOptionsError, match="heldout_fraction"):
        task.options(heldout_fraction=0.9)
    with pytest.raises(TaskOptionsError, match="not an option of this task.*known options: csv, target"):
        task.options(seq_len=32)


def test_held_out_rows_are_drawn_from_the_host_secret_and_never_trained_on(csvtask):
    from evaluators import heldout
    from evaluators.tasks import get_task
    task = get_task("csvreg")
    spec = task.default_spec()
    inputs, _ = task.heldout(spec, heldout.machine_secret())
    other, _ = task.heldout(spec, heldout.derive(b"another machine", 1))
    assert {r.tobytes() for r in inputs["features"]} != {r.tobytes() for r in other["features"]}
    train = task.sandbox_files(spec)
    assert len(train["features"]) + len(inputs["features"]) == spec.data["rows"]
    assert not {r.tobytes() for r in train["features"]} & {r.tobytes() for r in inputs["features"]}


def test_an_openai_run_on_the_installed_task_finishes_and_scores_r2(csv_run):
    run_dir, out = csv_run
    assert json.loads((run_dir / "run.json").read_text())["settings"]["task"] == "csvreg"
    candidates = _candidates(run_dir)
    assert set(candidates) == {"b-linear", "b-mlp", "c001"}
    c001 = candidates["c001"]
    assert c001["origin"] == "openai" and c001["status"] == "evaluated" and c001["source"] == WIDER_MLP
    assert c001["task"] == "csvreg" and c001["parent_ids"]
    r2 = {cid: c["evaluations"]["short"]["metrics"]["r2"] for cid, c in candidates.items()}
    assert r2["b-mlp"] > 0.8 and r2["c001"] > 0.8 and r2["b-linear"] < r2["b-mlp"]   # the nonlinear part is real
    assert c001["evaluations"]["check"]["metrics"]["flops_per_sample"] > 0
    assert c001["analysis"].startswith(ANALYSIS["summary"])
    header = next(line for line in out.splitlines() if " id " in line)
    assert " r2 " in header and "accuracy" not in header
    assert "c001" in out and "best" in out


def test_show_and_replay_work_on_the_installed_task(csv_run):
    run_dir, _ = csv_run
    same_shell = {"ARCHLAB_TASK_OPTIONS": json.dumps(CSV_OPTIONS)}    # as when the run was started
    show = archlab("show", str(run_dir), extra_env=same_shell)
    assert show.returncode == 0, show.stderr
    assert " r2 " in next(line for line in show.stdout.splitlines() if " id " in line)
    assert all(cid in show.stdout for cid in ("b-linear", "b-mlp", "c001"))
    replay = archlab("replay", run_dir.name, "--runs-dir", str(run_dir.parent), extra_env=same_shell)
    assert replay.returncode == 0 and "replay matches" in replay.stdout, replay.stdout + replay.stderr


# --- the task in a file ----------------------------------------------------------------------------------------
def test_a_run_on_a_task_file_finishes_and_scores_accuracy(file_run):
    engine, run_dir, out = file_run
    recorded = json.loads((run_dir / "run.json").read_text())["settings"]["task"]
    assert recorded == f"{(ROOT / 'tests' / 'fixtures' / 'file_task.py').resolve()}:DelayedCopy"   # replays anywhere
    candidates = _candidates(run_dir)
    assert set(candidates) == {"b-softmax", "c001"}            # the task's own choice of baseline, one proposal
    proposal = candidates["c001"]
    assert proposal["origin"] == engine and proposal["task"] == "delayed-copy"
    assert proposal["parent_ids"] == ["b-softmax"] and proposal["status"] == "evaluated"
    if engine == "offline":
        assert proposal["genome"]                                # a member of the space, rendered
    else:
        assert proposal["source"] == module(48)
    for cid, record in candidates.items():
        if record["status"] in ("baseline", "evaluated"):
            metrics = record["evaluations"]["short"]["metrics"]
            assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["heldout_loss"] > 0, (cid, metrics)
    assert candidates["b-softmax"]["evaluations"]["short"]["metrics"]["accuracy"] > 2 / 15   # chance is 1/15
    show = archlab("show", str(run_dir), extra_env={"ARCHLAB_TASK_OPTIONS": json.dumps(COPY_OPTIONS)})
    assert show.returncode == 0, show.stderr
    assert " accuracy " in next(line for line in show.stdout.splitlines() if " id " in line)
    assert all(cid in show.stdout for cid in candidates)
    assert "delayed-copy" in out


# --- wrong tasks, as the CLI says them ---------------------------------------------------------------------------
def _refused(*args: str) -> str:
    proc = archlab("run", *args, "--rounds", "1", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_an_unknown_task_name_lists_the_tasks_found(csvtask):
    message = _refused("--task", "csvregg")
    assert "unknown task 'csvregg'" in message
    assert "csvreg" in message.split("known tasks:")[1] and "mqar" in message    # installed and shipped
    assert "path/to/task.py:ClassName" in message


def test_a_file_that_is_not_a_task_says_what_it_lacks(tmp_path):
    message = _refused("--task", f"{FILE_TASK.rpartition(':')[0]}:Copy")
    assert "defines no 'Copy'" in message and "the tasks it defines: DelayedCopy" in message
    half = tmp_path / "half_task.py"
    half.write_text("from evaluators.tasks.base import Task\n\n\nclass Half(Task):\n    name = 'half'\n"
                    "    metric = 'accuracy'\n\n    def spec(self, options):\n        raise NotImplementedError\n")
    message = _refused("--task", f"{half}:Half")
    assert "Half does not define" in message
    assert all(missing in message for missing in ("example_input", "heldout", "predict", "score", "train_batch"))
    plain = tmp_path / "plain.py"
    plain.write_text("class Model:\n    pass\n")
    message = _refused("--task", f"{plain}:Model")
    assert "is not a subclass of evaluators.tasks.base.Task" in message
