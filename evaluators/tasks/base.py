"""The task protocol: everything task-specific, in one class a researcher can write for their own problem.

A task says what a candidate is and how it is scored. Nothing outside a task branches on what
kind of task it is: the loop, the agents, the sandbox runner and the CLI ask the task.

Declared on the class (read without building anything, and without torch: `archlab tasks`
and settings validation import task modules, so a task module imports torch lazily or is
cheap to import anyway):
- `name`, `summary` (one line), `metric` (the quality metric `score` returns) and
  `higher_is_better`; `metrics` (what the objective may name instead: `heldout_loss` by default);
  `costs` (cost metrics of its own, beside `archlab.settings.COST_METRICS`, for limits and Pareto axes);
- `Options`: the task's options as a pydantic model (`TaskOptions`, unknown keys refused), the
  `task_options` table of lab.toml; validated when settings load;
- `entry` and `contract`: the function a candidate module must define, and in words what it
  must honour (`contract_text(spec)` is what the LLM prompts show);
- `candidate_kind` (`architecture`, `inference`, ...): what a candidate is, as records show it;
- `search_space`: the offline engine's space for this task, by name in `agents.spaces` or as
  "module:attribute" (None: only an LLM engine can propose candidates);
- `run_defaults(options)`: settings a run of this task gets where the user set none (`RunDefaults`).

Host side (trusted; never runs candidate code):
- `spec(options)` builds the `TaskSpec` (may read or generate data, train a fixed model, ...);
- `heldout(spec, secret)` draws held-out inputs and targets from the host's secret
  (`evaluators.heldout`), or `host_only_paths(spec)` names the files they are read from so
  every job runs with them hidden; the harness refuses a task that does neither;
- `score(spec, predictions, targets)` turns validated predictions into metrics;
- `sandbox_files(spec)` is training data the sandbox needs and cannot generate;
- optional `prepare(job, jobdir)` / `judge(job, result, jobdir, kept, wall)`: a task that
  judges a procedure rather than predictions (decode) lays out and scores its own jobs;
- `baselines(spec)`: {name: (genome, source)} of reference candidates; by default its search
  space's.
- optional `suite_scenarios(spec)`: (scenario names, each item's scenario) of a downstream
  suite the task scores item by item (`EvalResult.items`), or None; a task that has one scores
  a job's `EvalJob.items` subset when given (the loop's anchor set: `agents.anchors`).

Sandbox side (next to the candidate; nothing here is trusted by the host):
- `attach(spec, files)`, `example_input`, `train_batch`, `loss`, `predict`,
  `check_contract`, `expected_prediction_shape`;
- `run_in_sandbox(...)`: what one job does at a fidelity. The default (`evaluators.model_job.
  run_model_job`) builds the candidate's model and checks, measures or trains it; a task
  whose candidate is not a model (decode) overrides it.
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from evaluators.sandbox_output import SandboxOutput  # noqa: F401  (part of the task API: tasks return it)
from wire.task import RunDefaults, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

IGNORE = -100  # target value where no loss applies


class TaskOptions(BaseModel):
    """A task's options (lab.toml's `task_options`): one typed field per option, with its default and a
    `description`; unknown options are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskOptionsError(ValueError):
    """A task option is unknown or has a wrong value; the message names it and lists the known ones."""


def _problem(error: dict) -> str:
    """One validation error of a task's options, as a user reads it: the option, what is wrong, what was given."""
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: not an option of this task"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {error['input']!r})" if where else message


class Task(ABC):
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    metric: ClassVar[str]                           # the quality metric `score` returns
    higher_is_better: ClassVar[bool] = True
    metrics: ClassVar[tuple[str, ...]] = ("heldout_loss",)   # other metrics an objective may optimise instead
    costs: ClassVar[tuple[str, ...]] = ()           # cost metrics of its own an objective may limit or trade off
    lower_is_better: ClassVar[tuple[str, ...]] = ("heldout_loss",)   # of `metrics`, those where lower is better
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    entry: ClassVar[str] = "build_model"
    contract: ClassVar[str] = "build_model(spec) -> torch.nn.Module"
    candidate_kind: ClassVar[str] = "architecture"
    search_space: ClassVar[str | None] = None
    token_input: ClassVar[bool] = False             # a model's inputs are token ids (proxies, throughput units)
    ref: str = ""       # set by `evaluators.tasks.get_task` for a task given as a file: "/abs/path/task.py:Class"

    def higher_is_better_for(self, metric: str) -> bool:
        """Which way `metric` (the task's or one of `metrics`) is better."""
        return self.higher_is_better if metric == self.metric else metric not in self.lower_is_better

    # --- options and spec ---------------------------------------------------------------------------------
    def options(self, **values) -> TaskOptions:
        """`values` validated as this task's options; TaskOptionsError names what is wrong."""
        try:
            return self.Options(**values)
        except ValidationError as exc:
            known = ", ".join(self.Options.model_fields) or "none"
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise TaskOptionsError(f"{self.name} options: {problems}; known options: {known}") from None

    def default_spec(self, **overrides) -> TaskSpec:
        """The task's spec with `overrides` as its options (TaskOptionsError when they are not)."""
        spec = self.spec(self.options(**overrides))
        return spec.model_copy(update={"ref": self.ref}) if self.ref else spec

    @abstractmethod
    def spec(self, options: TaskOptions) -> TaskSpec:
        """Host side: the task's spec for these options."""

    def run_defaults(self, options: TaskOptions) -> RunDefaults:
        """Settings a run of this task with these options gets where the user set none (read when settings load:
        cheap, no data)."""
        return RunDefaults()

    def contract_text(self, spec: TaskSpec, coder: bool = True) -> str:
        """The candidate contract in words, for the LLM prompts (`coder=False`: the planner's shorter copy)."""
        from evaluators.static_check import ALLOWED_IMPORTS
        budget = spec.budgets.get("short")
        training = (f"The `short` evaluation trains {budget.steps} steps at batch size {budget.batch_size}, "
                    f"lr {budget.lr:g} (AdamW, warmup), the same for every candidate." if budget else "")
        rules = f"{self.contract_rules(spec)} It must have at most spec.max_params = {spec.max_params} parameters."
        if not coder:
            return f"{rules} {training}".strip()
        imports = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
        return (f"A candidate is one self-contained Python module defining a top-level `{self.contract}`. {rules} "
                "Read shapes from `spec` rather than hard-coding them. "
                f"Imports allowed: {imports}; no files, network, processes, exec/eval. {training}").strip()

    def contract_rules(self, spec: TaskSpec) -> str:
        """What the candidate's model must honour, in a sentence or two (the contract check's rules)."""
        if spec.family == "sequence":
            return (f"The model maps token ids `[B, T]` (torch.long) to logits `[B, T, V]` (V = spec.vocab_size = "
                    f"{spec.vocab_size}; T <= spec.seq_len = {spec.seq_len}). It must be causal (the output at "
                    "position t may depend only on positions <= t) and must not mix samples across the batch.")
        if spec.family == "vision":
            return (f"The model maps images `[B, C, H, W]` (float) to logits `[B, {spec.num_classes}]` "
                    "(spec.num_classes) and must not mix samples across the batch.")
        return f"The model honours the {spec.family} contract of this task."

    def description(self) -> str:
        """What the task is, in words: its module's docstring."""
        return (sys.modules[type(self).__module__].__doc__ or self.summary or self.name).strip()

    def baselines(self, spec: TaskSpec) -> dict[str, tuple[dict, str]] | None:
        """{name: (genome, source)} of reference candidates; None: the search space's (`agents.spaces`)."""
        return None

    # --- host side ----------------------------------------------------------------------------------------
    def suite_scenarios(self, spec: TaskSpec) -> tuple[tuple[str, ...], np.ndarray] | None:
        """A downstream suite's scenario names and each item's scenario; None: this task scores no items."""
        return None

    @abstractmethod
    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Host side: ({name: array} the sandbox may see, targets it must not see), drawn with the host's
        `secret` (`evaluators.heldout.seed(secret, ...)`), so nothing inside the sandbox can regenerate them."""

    @abstractmethod
    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Host side: quality metrics from validated predictions."""

    @abstractmethod
    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        """The exact shape `predict` must return, so the host can refuse anything else."""

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        """Host side: training data the sandbox needs and cannot generate (never held-out targets)."""
        return {}

    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        """Host side: files or directories the held-out set is read from; every job runs with them hidden."""
        return ()

    # --- sandbox side -------------------------------------------------------------------------------------
    @abstractmethod
    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        """A batch of valid inputs for contract checks."""

    @abstractmethod
    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        """(inputs, targets) for one training step; targets use -100 where no loss applies."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Sandbox side: the model's raw outputs on held-out inputs, as one float array."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss: cross-entropy over the last dimension, skipping `IGNORE` targets."""
        import torch.nn.functional as F
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE)

    def check_contract(self, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Sandbox side: hold `model` to the family's contract (`evaluators.contracts`); cost metrics."""
        from evaluators.contracts import CHECKS
        if spec.family not in CHECKS:
            raise NotImplementedError(f"no contract check for family {spec.family!r}; "
                                      f"override check_contract in {type(self).__name__}")
        return CHECKS[spec.family](self, spec, model, device)

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        """Sandbox side: receive what `sandbox_files` wrote; tasks that generate their data ignore it."""

    def run_in_sandbox(self, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path, out_dir: Path,
                       files: dict, device: torch.device, clock: Callable[[], float]) -> SandboxOutput:
        """Sandbox side: one job at `fidelity`. Raises `evaluators.fidelities.JobFailure` (or a subclass) for a
        candidate that breaks the rules; any other exception is classified by the runner. `out_dir` is where a
        task may write files of its own for its host-side `judge` (predictions go in the returned record)."""
        from evaluators.model_job import run_model_job    # torch: imported when a job runs, not by the registry
        return run_model_job(self, spec, fidelity, seed, inputs_dir, device)
