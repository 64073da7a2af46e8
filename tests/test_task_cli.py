"""`archlab tasks` and `archlab new-task` through the real CLI: the listing (without torch, a broken plug-in shown
with its error), then a new task written, its own test run, a short offline run of it, and a run of the
skeleton without a search space with `--llm openai` against the strict fake endpoint on loopback."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.llm.fake import Answer, FakeEndpoint
from tests import runs_support as rs
from tests.llm_support import KEY, fenced

SHIPPED = ("mqar", "charlm", "digits", "decode", "nb201")

BROKEN_FILE = '''
raise RuntimeError("this task file is broken on purpose")
'''


def archlab_in(cwd: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    """The CLI run from `cwd` (where a new task's lab.toml points at task.py), with no mqar options in the env."""
    env = {k: v for k, v in rs.env(**extra).items() if k != "ARCHLAB_TASK_OPTIONS"}
    return subprocess.run([*rs.ARCHLAB, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def broken_plugin(tmp_path_factory) -> Path:
    """A directory for PYTHONPATH holding an installed distribution whose `archlab.tasks` entry point cannot load."""
    site = tmp_path_factory.mktemp("site")
    info = site / "brokentask-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokentask\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[archlab.tasks]\nbrokentask = brokentask_missing.task:Broken\n")
    return site


@pytest.fixture(scope="module")
def listing(broken_plugin, tmp_path_factory) -> str:
    files = tmp_path_factory.mktemp("files")
    (files / "broken.py").write_text(BROKEN_FILE)
    (files / "notask.py").write_text("ANSWER = 42\n")
    proc = rs.archlab("tasks", "--task", f"{files / 'notask.py'}:NoSuchTask", "--task", f"{files / 'broken.py'}:Broken",
                      extra_env={"PYTHONPATH": str(broken_plugin)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_tasks_lists_the_shipped_tasks_with_contract_options_and_engine(listing):
    for name in SHIPPED:
        assert f"│ {name} " in listing, name
    assert "shipped" in listing
    # mqar's contract, options with their defaults, metric and direction, and its search space
    assert "build_model(spec)" in listing and "vocab_size = 64" in listing and "short_steps = 400" in listing
    assert "short_seq_len = unset" in listing and "accuracy (higher" in listing
    assert "yes (sequence-blocks)" in listing
    assert "split_seed = 0" in listing and "no (use --llm openai)" in listing      # digits: no search space
    assert "generate(model," in listing and "yes (decoding-techniques)" in listing  # decode: another contract


def test_tasks_shows_what_cannot_be_loaded_instead_of_failing(listing):
    assert "brokentask" in listing and "installed (brokentask)" in listing
    assert "brokentask_missing" in listing and "cannot be" in listing
    assert "broken on purpose" in listing.replace("\n", "")          # a file task that raises on import
    assert "defines no 'NoSuchTask'" in listing.replace("\n", "").replace("│", "")   # what a file lacks


def test_tasks_imports_no_torch(broken_plugin):
    code = ("import sys; from typer.testing import CliRunner; from archlab.cli import app\n"
            "for args in (['tasks'], ['tasks', 'mqar'], ['tasks', 'decode']):\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=rs.ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(broken_plugin)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_tasks_name_describes_one_task_and_names_unknown_ones():
    proc = rs.archlab("tasks", "mqar")
    assert proc.returncode == 0, proc.stderr
    assert "num_queries" in proc.stdout and "keys queried per sequence" in proc.stdout     # the option's description
    assert "Zoology" in proc.stdout                                                        # its docstring
    unknown = rs.archlab("tasks", "mqarr")
    assert unknown.returncode == 2 and "unknown task 'mqarr'" in unknown.stderr and "charlm" in unknown.stderr


def test_new_task_refuses_bad_names_and_existing_directories(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    for name, says in (("taken", "exists already"), ("2fast", "not a Python identifier"),
                       ("mqar", "exists already")):
        proc = rs.archlab("new-task", name, "--dir", str(tmp_path))
        assert proc.returncode == 2 and says in proc.stderr.replace("\n", ""), (name, proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_the_guide_shows_the_code_new_task_writes(tmp_path):
    from archlab.newtask import write_skeleton
    written = (write_skeleton("reverse", tmp_path).directory / "task.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", (rs.ROOT / "docs" / "tasks.md").read_text(), re.S)
    assert len(blocks) >= 5
    for block in blocks:
        assert block in written, block           # docs/tasks.md quotes task.py as `archlab new-task reverse` writes it


@pytest.fixture(scope="module")
def new_task(tmp_path_factory) -> tuple[Path, str]:
    parent = tmp_path_factory.mktemp("mytasks")
    proc = rs.archlab("new-task", "demo", "--dir", str(parent))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return parent / "demo", proc.stdout


def test_new_task_writes_a_skeleton_and_says_how_to_run_it(new_task):
    directory, out = new_task
    assert sorted(p.name for p in directory.iterdir()) == ["baseline.py", "lab.toml", "task.py", "test_task.py"]
    assert 'task = "task.py:DemoTask"' in (directory / "lab.toml").read_text()
    assert "archlab run --config lab.toml --llm offline" in out and "python -m pytest test_task.py" in out
    listed = archlab_in(directory, "tasks", "--task", "task.py:DemoTask")
    assert listed.returncode == 0, listed.stderr
    assert "reverse a short" in listed.stdout and "length = 8" in listed.stdout and "yes (sequence-blocks)" in listed.stdout


def test_new_task_passes_its_own_test(new_task):
    directory, _ = new_task
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_task.py"],
                          capture_output=True, text=True, cwd=directory, timeout=240,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout


def test_new_task_runs_with_the_offline_engine_and_show_scores_it(new_task):
    directory, _ = new_task
    proc = archlab_in(directory, "run", "--config", "lab.toml", "--llm", "offline", "--rounds", "1",
                      "--short-steps", "40", timeout=400, ARCHLAB_LOOP__NOISE_SEEDS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p for p in (directory / "runs").iterdir() if (p / "run.json").is_file()]
    show = archlab_in(directory, "show", run_dir.name)
    assert show.returncode == 0, show.stderr
    rows = [line for line in show.stdout.splitlines() if line.startswith("│ ")]
    header = next(line for line in show.stdout.splitlines() if "┃ id" in line)
    assert "accuracy" in header                                        # ranked by the task's own metric
    accuracy = {cells[1].strip(): cells[4].strip() for cells in (row.split("│") for row in rows) if cells[1].strip()}
    assert {"b-softmax", "b-linear", "b-mlp", "c001"} <= set(accuracy), show.stdout
    assert all(0.0 <= float(accuracy[c]) <= 1.0 for c in ("b-softmax", "c001")), show.stdout
    assert "Pareto front (demo, accuracy" in show.stdout.replace("\n", "")


PLAN = {"title": "two attention layers", "hypothesis": "A second layer of attention can first find the separator and "
        "then read back from it, which one layer does only approximately.", "change_kind": "depth",
        "change": "stack two attention layers", "expected_effect": "accuracy up at twice the parameters"}
ANALYSIS = {"summary": "Two attention layers reversed the sequence about as well as one.",
            "findings": [{"text": "A second attention layer changed reversal accuracy little at this budget.",
                          "kind": "insight", "evidence": [{"metric": "accuracy", "value": 0.2}]}]}
TWO_LAYERS = '''"""Two layers of causal softmax attention over learned positions."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.out(y.transpose(1, 2).reshape(B, T, -1))


class Model(nn.Module):
    def __init__(self, vocab_size, seq_len, d_model=64, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, d_model))
        self.layers = nn.ModuleList([Layer(d_model, heads) for _ in range(2)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids):
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


def build_model(spec):
    return Model(spec.vocab_size, spec.seq_len)
'''


def test_a_new_task_without_a_search_space_runs_with_an_llm(tmp_path):
    made = rs.archlab("new-task", "mine", "--dir", str(tmp_path), "--search-space", "none")
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "mine"
    refused = archlab_in(directory, "run", "--config", "lab.toml", "--llm", "offline")
    assert refused.returncode == 2 and "declares none; use --llm openai" in refused.stderr.replace("\n", "")
    answers = {"planner-m": [Answer.json(PLAN, expect="reverse")],                  # the task's summary, in the prompt
               "coder-m": [Answer.text(fenced(TWO_LAYERS), expect="build_model(spec) -> torch.nn.Module")],
               "analyst-m": [Answer.json(ANALYSIS, expect="# The candidate: c001")]}
    with FakeEndpoint(answers) as fake:
        proc = archlab_in(directory, "run", "--config", "lab.toml", "--rounds", "1", "--short-steps", "40",
                          timeout=400, ARCHLAB_LLM__BASE_URL=fake.url, OPENAI_API_KEY=KEY,
                          ARCHLAB_LLM__PLANNER_MODEL="planner-m", ARCHLAB_LLM__CODER_MODEL="coder-m",
                          ARCHLAB_LLM__ANALYST_MODEL="analyst-m", ARCHLAB_LOOP__BATCH="1",
                          ARCHLAB_LOOP__NOISE_SEEDS="1")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = rs.only_run(directory / "runs")
    metrics = {p.parent.name: json.loads(p.read_text())["evaluations"]["short"]["metrics"]
               for p in (run_dir / "candidates").glob("*/candidate.json")}
    assert set(metrics) == {"b-baseline", "c001"}                   # the task's own baseline, then the LLM's module
    assert all(0.0 <= m["accuracy"] <= 1.0 for m in metrics.values())
