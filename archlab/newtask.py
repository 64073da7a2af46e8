"""What `archlab new-task NAME` writes: a working task to make one's own, with a candidate, a test and settings.

`write_skeleton` makes a new directory NAME holding
- `task.py`: a complete small task written against `evaluators.tasks.base.Task` (reverse a
  short sequence of symbols): typed options, its spec, a held-out set drawn from the host's
  secret, host-side scoring, and the sandbox side (examples, training batches, predictions);
  with the `sequence-blocks` search space (the default) the offline engine can search it,
  with none only an LLM engine proposes candidates and the task names its own baseline;
- `baseline.py`: one candidate (a layer of causal attention), the run's baseline when the
  task has no search space, and in any case a module to start from or to `archlab eval`;
- `test_task.py`: the task's own pytest file: options, the held-out rule, and the baseline
  through the real harness and process sandbox at `check` and `short` on a tiny budget;
- `lab.toml`: a small run of it (`archlab run --config lab.toml`).
The templates below are the files, with `__NAME__` and `__CLASS__` filled in. What this does
not do: overwrite anything (an existing directory is refused), or print (the CLI does).
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path

SPACES = ("sequence-blocks", "none")    # the skeleton is a token task: the one shipped space that fits it, or none


class NewTaskError(ValueError):
    """The name or directory given cannot hold a new task (the user's to fix); nothing was written."""


@dataclass(frozen=True)
class Skeleton:
    directory: Path
    name: str
    class_name: str
    search_space: str | None
    files: tuple[str, ...]

    def next_steps(self) -> list[str]:
        """How to run it, as shell lines with comments (the CLI prints them)."""
        ref = f"task.py:{self.class_name}"
        steps = [(f"cd {self.directory}", ""),
                 ("python -m pytest test_task.py", "its own test (needs pytest; about a minute)"),
                 (f"archlab tasks {ref}", "how archlab sees it: contract, options"),
                 (f"archlab eval baseline.py --task {ref} --fidelity short", "one candidate, scored"),
                 ("archlab run --config lab.toml --llm offline", "the offline engine searches sequence-blocks")
                 if self.search_space else
                 ("", "no search space: the offline engine cannot propose candidates for it; an LLM can"),
                 ("archlab run --config lab.toml --llm openai", "with OPENAI_BASE_URL and OPENAI_API_KEY set"),
                 ("archlab show RUN", "its candidates, scored by accuracy")]
        width = max(len(command) for command, _ in steps)
        return [f"{command:<{width}}  # {comment}" if comment and command else command or f"# {comment}"
                for command, comment in steps]


def class_name(name: str) -> str:
    """`reverse_words` -> `ReverseWordsTask` (never the base class's own name, `Task`)."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return camel if camel.endswith("Task") and camel != "Task" else f"{camel}Task"


def write_skeleton(name: str, parent: Path, search_space: str = "sequence-blocks") -> Skeleton:
    """Write the task NAME into `parent`/NAME (a new directory); NewTaskError says what is wrong, having written
    nothing."""
    from evaluators.tasks import known_names

    if not name.isidentifier() or keyword.iskeyword(name) or not name.strip("_"):
        raise NewTaskError(f"task name {name!r} is not a Python identifier; use letters, digits and underscores, "
                           "not starting with a digit (e.g. reverse_words)")
    if name in known_names():
        raise NewTaskError(f"a task named {name!r} exists already (`archlab tasks` lists them); choose another name")
    if search_space not in SPACES:
        raise NewTaskError(f"search space {search_space!r}: the skeleton is a token-sequence task, so it takes "
                           f"{' or '.join(SPACES)}")
    directory = Path(parent).expanduser() / name
    if directory.exists():
        raise NewTaskError(f"{directory} exists already; nothing was written (choose another name or --dir)")
    space = None if search_space == "none" else search_space
    cls = class_name(name)
    files = {"task.py": _task_source(space), "baseline.py": BASELINE, "test_task.py": TEST, "lab.toml": _lab_toml(space)}
    try:
        directory.mkdir(parents=True)
    except OSError as exc:
        raise NewTaskError(f"cannot make {directory}: {exc}") from None
    for filename, text in files.items():
        (directory / filename).write_text(text.replace("__NAME__", name).replace("__CLASS__", cls))
    return Skeleton(directory.resolve(), name, cls, space, tuple(files))


def _task_source(space: str | None) -> str:
    if space is None:
        return TASK.replace(SEARCH_SPACE_LINE, NO_SEARCH_SPACE_LINE).replace(BASELINES_MARK, OWN_BASELINES)
    return TASK.replace(SEARCH_SPACE_LINE, SEARCH_SPACE_LINE.replace("sequence-blocks", space)).replace(
        BASELINES_MARK, "\n")


def _lab_toml(space: str | None) -> str:
    if space is None:
        return LAB_TOML + ('\n[llm]\nbackend = "openai"           # no search space: an LLM proposes candidates '
                           '(set OPENAI_BASE_URL and OPENAI_API_KEY)\n')
    return LAB_TOML


TASK = '''"""__NAME__: reverse a short sequence of symbols (written by `archlab new-task`; make it yours).

Each sequence holds `length` symbols, a separator, then `length - 1` blanks. From the
separator on, the model outputs the symbols in reverse order, one per position:

    tokens:   a  b  c  d  |  _  _  _
    targets:  .  .  .  .  d  c  b  a

Token 0 is the blank, 1 the separator, 2 .. vocab_size - 1 are symbols. The answers never
appear in the input (blanks stand where they go), so training and held-out inputs look alike,
and a causal model gets them right only by reading back over the symbols.

The held-out set is out of reach (evaluators/heldout.py): its sequences are drawn from a
generator seeded with the host's secret (`evaluators.heldout.seed`), so a candidate that knows
this file, its options and every public seed cannot regenerate them; the sandbox gets the
held-out inputs, the targets stay on the host, and the host scores the predictions that come
back. Training batches come from the sandbox's own generator, which never sees the secret.

Host side (trusted): `spec`, `heldout`, `expected_prediction_shape`, `score`.
Sandbox side (next to the candidate; the host believes nothing it says unchecked):
`example_input`, `train_batch`, `predict`. This file is copied into every job, so it reads no
files of its own and imports only what the sandbox has (numpy, torch, pydantic, archlab).
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from evaluators.heldout import seed as heldout_seed
from evaluators.tasks.base import IGNORE, Task, TaskOptions
from evaluators.tasks.lazy import torch     # imported on first use: `archlab tasks` lists this task without torch
from wire.task import Budget, TaskSpec

BLANK, SEPARATOR = 0, 1     # token ids; symbols are 2 .. vocab_size - 1


class __CLASS__Options(TaskOptions):
    """lab.toml's [task_options] for this task; unknown keys and out-of-range values are refused when settings
    load."""

    vocab_size: int = Field(16, ge=4, le=4096, description="tokens: 0 blank, 1 separator, 2.. symbols")
    length: int = Field(8, ge=2, le=512, description="symbols per sequence (a sequence is twice as long)")
    heldout_size: int = Field(256, ge=16, le=65536, description="held-out sequences scored per evaluation")
    short_steps: int = Field(200, ge=1, description="training steps at the short fidelity")
    full_steps: int = Field(1000, ge=1, description="training steps at the full fidelity")


def make_sequences(n: int, vocab_size: int, length: int, generator: torch.Generator):
    """(tokens [n, 2 * length], targets [n, 2 * length]); targets are IGNORE before the separator."""
    symbols = torch.randint(2, vocab_size, (n, length), generator=generator)
    tokens = torch.full((n, 2 * length), BLANK, dtype=torch.long)
    tokens[:, :length] = symbols
    tokens[:, length] = SEPARATOR
    targets = torch.full((n, 2 * length), IGNORE, dtype=torch.long)
    targets[:, length:] = symbols.flip(1)
    return tokens, targets


class __CLASS__(Task):
    name = "__NAME__"
    summary = "reverse a short sequence of symbols (a task from archlab new-task)"
    metric = "accuracy"                     # what `score` returns and a run ranks by; higher is better
    higher_is_better = True
    metrics = ("heldout_loss",)             # what an objective may optimise instead ([objective] metric)
    Options = __CLASS__Options
    entry = "build_model"                   # the function a candidate module defines ...
    contract = "build_model(spec) -> torch.nn.Module"   # ... and its signature, as prompts and `archlab tasks` show
    candidate_kind = "architecture"
    search_space = "sequence-blocks"        # the offline engine's space (agents/spaces.py); None: only an LLM proposes
    token_input = True                      # inputs are token ids (zero-cost proxies and throughput count tokens)

    # --- options and spec (host side) ------------------------------------------------------------------------
    def spec(self, options: __CLASS__Options) -> TaskSpec:
        """What a candidate's build_model(spec) receives; `family = "sequence"` holds it to the token-model
        contract (evaluators/contracts.py: logits [B, T, V], causal, no mixing across the batch)."""
        budgets = {
            "check": Budget(steps=1, batch_size=4, lr=1e-3),
            "short": Budget(steps=options.short_steps, batch_size=64, lr=3e-3),
            "full": Budget(steps=options.full_steps, batch_size=64, lr=3e-3),
        }
        return TaskSpec(name=self.name, family="sequence", vocab_size=options.vocab_size, seq_len=2 * options.length,
                        data={"length": options.length}, heldout_size=options.heldout_size, budgets=budgets)
__BASELINES__
    # --- host side: the held-out set and the score ------------------------------------------------------------
    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        generator = torch.Generator().manual_seed(heldout_seed(secret, self.name, spec.seed, spec.seq_len,
                                                               spec.vocab_size, spec.heldout_size))
        tokens, targets = make_sequences(spec.heldout_size, spec.vocab_size, int(spec.data["length"]), generator)
        answers = targets[:, int(spec.data["length"]):]                     # [N, length]
        return {"tokens": tokens.numpy()}, answers.numpy()      # inputs go into the job; answers stay here

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (spec.heldout_size, int(spec.data["length"]), spec.vocab_size)

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        logits = torch.from_numpy(predictions).double()         # [N, length, V]: shape and finiteness checked
        answers = torch.from_numpy(targets).long()              # [N, length]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), answers.reshape(-1)).item()
        accuracy = (logits.argmax(-1) == answers).double().mean().item()
        return {"accuracy": accuracy, "heldout_loss": loss}

    # --- sandbox side: data for checks and training, predictions on held-out inputs ---------------------------
    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return make_sequences(batch_size, spec.vocab_size, int(spec.data["length"]), generator)[0]

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        return make_sequences(batch_size, spec.vocab_size, int(spec.data["length"]), generator)

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tokens = torch.from_numpy(inputs["tokens"]).long()      # [N, 2 * length]
        length = tokens.shape[1] // 2
        device = next(model.parameters()).device
        with torch.no_grad():
            logits = [model(tokens[s:s + 128].to(device))[:, length:].float().cpu()
                      for s in range(0, len(tokens), 128)]
        return torch.cat(logits).numpy().astype(np.float32)     # [N, length, V]
'''

SEARCH_SPACE_LINE = ('    search_space = "sequence-blocks"        # the offline engine\'s space (agents/spaces.py); '
                     'None: only an LLM proposes\n')
NO_SEARCH_SPACE_LINE = ('    search_space = None                     # only an LLM proposes candidates; '
                        '"sequence-blocks" would let the offline engine search it\n')
BASELINES_MARK = "__BASELINES__\n"
OWN_BASELINES = '''
    def baselines(self, spec: TaskSpec) -> dict[str, tuple[dict, str]]:
        """The run's reference candidates, {name: (genome, source)}: baseline.py beside this file. Host side only
        (in a job this module is a copy, without its neighbours)."""
        from pathlib import Path
        return {"baseline": ({}, Path(__file__).with_name("baseline.py").read_text())}

'''

BASELINE = '''"""A baseline for __NAME__: one layer of causal softmax attention over learned positions.

A candidate is one module defining `build_model(spec) -> torch.nn.Module` that maps token ids
[B, T] to logits [B, T, spec.vocab_size]; it must be causal (the output at position t depends
only on positions <= t) and must not mix samples across the batch. Read shapes from `spec`;
import only torch, math, numpy and a few standard modules (evaluators/static_check.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self, vocab_size, seq_len, d_model=64, heads=4):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, d_model))     # where a token is: reversing needs it
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids):                                                 # ids: [B, T]
        B, T = ids.shape
        x = self.embed(ids) + self.pos[:T]                                  # [B, T, D]
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)   # each [B, H, T, D/H]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)         # [B, H, T, D/H]
        x = x + self.out(y.transpose(1, 2).reshape(B, T, -1))
        return self.head(self.norm(x))                                      # [B, T, V]


def build_model(spec):
    return Model(spec.vocab_size, spec.seq_len)
'''

TEST = '''"""The __NAME__ task's own test: it loads as archlab loads it, keeps its held-out set out of the candidate's
reach, and scores its baseline through the real harness and process sandbox. Run: python -m pytest test_task.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluators import heldout
from evaluators.harness import evaluate
from evaluators.tasks import get_task
from evaluators.tasks.base import TaskOptionsError
from sandbox.process import ProcessSandbox
from wire.jobs import EvalJob, Limits

HERE = Path(__file__).resolve().parent
TASK = get_task(f"{HERE / 'task.py'}:__CLASS__")         # as `--task task.py:__CLASS__` finds it
TINY = {"length": 4, "heldout_size": 64, "short_steps": 30}  # seconds, not minutes


def test_options_are_typed_and_checked():
    assert TASK.options(length=5).length == 5
    with pytest.raises(TaskOptionsError, match="not an option"):
        TASK.options(lenght=5)
    with pytest.raises(TaskOptionsError):
        TASK.options(length=0)


def test_heldout_targets_come_from_the_hosts_secret():
    spec = TASK.default_spec(**TINY)
    inputs, targets = TASK.heldout(spec, b"one secret")
    _, same = TASK.heldout(spec, b"one secret")
    _, other = TASK.heldout(spec, b"another secret")
    assert np.array_equal(targets, same) and not np.array_equal(targets, other)
    assert TASK.expected_prediction_shape(spec)[:2] == targets.shape
    heldout.check_rule(TASK, spec)           # the harness's own rule, applied before any held-out set leaves


@pytest.mark.parametrize("fidelity", ["check", "short"])
def test_the_baseline_runs_in_the_sandbox_and_is_scored(tmp_path, fidelity):
    spec = TASK.default_spec(**TINY)
    job = EvalJob(job_id=f"baseline-{fidelity}", candidate_id="baseline", source=(HERE / "baseline.py").read_text(),
                  task=spec, fidelity=fidelity, limits=Limits(wall_seconds=300, memory_mb=4096, cpus=1))
    result = evaluate(ProcessSandbox(), job, tmp_path / fidelity)
    assert result.status == "ok", f"{result.status}: {result.message}\\n{result.log_tail}"
    if fidelity == "short":                  # scored on the host, against targets the sandbox never saw
        assert 0.0 <= result.metrics[TASK.metric] <= 1.0
        assert np.isfinite(result.metrics["heldout_loss"])
'''

LAB_TOML = '''# A small run of the __NAME__ task: `archlab run --config lab.toml` from this directory
# (`archlab run --help` and README's Settings section list every setting).
task = "task.py:__CLASS__"    # a task in a file, relative to where archlab runs
rounds = 3

[task_options]               # the task's options: `archlab tasks task.py:__CLASS__` lists them
length = 6
short_steps = 150
full_steps = 400
'''
