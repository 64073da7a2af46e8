"""What every task provides: its spec, training batches, held-out inputs, and host scoring.

The split matters for honest scores: `train_batch` and `predict` run inside the sandbox next
to the candidate; `heldout` and `score` run on the trusted host, so held-out targets never
cross the sandbox wall.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from evaluators.spec import TaskSpec


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
    def heldout(self, spec: TaskSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Host side: ({name: array} the sandbox may see, targets it must not see)."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Sandbox side: the model's raw outputs on held-out inputs, as one float array."""

    @abstractmethod
    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Host side: quality metrics from validated predictions."""

    @abstractmethod
    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        """The exact shape `predict` must return, so the host can refuse anything else."""
