"""What every task provides: its spec, training batches, held-out inputs, and host scoring.

The split matters for honest scores: `train_batch` and `predict` run inside the sandbox next
to the candidate; `heldout` and `score` run on the trusted host, so held-out targets never
cross the sandbox wall. A task whose training data is not generated (a corpus, a dataset)
hands the sandbox only its training split: the host writes `sandbox_files(spec)` into the
job's inputs and the runner gives them back to the task with `attach`.

Held-out targets must also be out of the candidate's *reach*, not only out of its inputs
(`evaluators.heldout`): `heldout(spec, secret)` draws them from the host's secret, or the
task names the files they are read from in `host_only_paths(spec)` and the sandbox hides
those. The harness checks this for every task before a held-out set leaves the host.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.contracts import CHECKS
from wire.task import TaskSpec

IGNORE = -100  # target value where no loss applies


class Task(ABC):
    name: str
    metric: str  # the quality metric `score` returns, higher is better

    @abstractmethod
    def default_spec(self, **overrides) -> TaskSpec:
        """The task's spec, with `overrides` applied to its data recipe and budgets."""

    @abstractmethod
    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        """A batch of valid inputs for contract checks."""

    @abstractmethod
    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        """(inputs, targets) for one training step; targets use -100 where no loss applies."""

    @abstractmethod
    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Host side: ({name: array} the sandbox may see, targets it must not see), drawn with the host's
        `secret` (`evaluators.heldout.seed(secret, ...)`), so nothing inside the sandbox can regenerate them."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Sandbox side: the model's raw outputs on held-out inputs, as one float array."""

    @abstractmethod
    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Host side: quality metrics from validated predictions."""

    @abstractmethod
    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        """The exact shape `predict` must return, so the host can refuse anything else."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss: cross-entropy over the last dimension, skipping `IGNORE` targets."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE)

    def check_contract(self, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Sandbox side: hold `model` to the family's contract (`evaluators.contracts`); cost metrics."""
        if spec.family not in CHECKS:
            raise NotImplementedError(f"no contract check for family {spec.family!r}; "
                                      f"override check_contract in {type(self).__name__}")
        return CHECKS[spec.family](self, spec, model, device)

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        """Host side: training data the sandbox needs and cannot generate (never held-out targets)."""
        return {}

    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        """Host side: files or directories the held-out set is read from; every job runs with them hidden."""
        return ()

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        """Sandbox side: receive what `sandbox_files` wrote; tasks that generate their data ignore it."""
