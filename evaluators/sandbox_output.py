"""`SandboxOutput`: what one job measured inside the sandbox, as a task's `run_in_sandbox` returns it.

Part of the task API (`evaluators.tasks.base` exports it too), in a module of its own so that
the model-job machinery a task's default job uses can build one without importing the tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SandboxOutput:
    """What one job measured inside the sandbox, as the runner writes it into the report."""

    metrics: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    curve: list = field(default_factory=list)
    functional_hash: str | None = None
    predictions: Any = None         # a float array for the host to score (training fidelities), or None
