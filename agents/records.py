"""The `Candidate` and `Plan` records: a proposed change, and the module that implements it."""
from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field

from wire.jobs import EvalResult

# screened: stopped by the cheap score before training; reference: a random architecture of the search space,
# trained only as the yardstick "better than random" is measured against
CandidateStatus = Literal["proposed", "checked", "evaluated", "failed", "rejected", "baseline", "screened",
                          "reference"]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class Plan(BaseModel):
    """What the planner proposes: a hypothesis and one change to one parent."""

    title: str
    motivation: str              # the hypothesis, in words
    change: str                  # the kind of change, e.g. "short_conv"
    detail: str = ""             # the change itself, e.g. "short_conv 0 -> 3"
    expected: str = ""           # the effect the planner expects
    parent_id: str
    genome: dict[str, Any] | None = None   # the offline engine's exact recipe, when it has one
    retrieved: list[str] = Field(default_factory=list)  # ids of findings the plan was grounded on
    candidate_id: str = ""       # the candidate that implements it (set by the graph, not by the planner)
    models: dict[str, str] = Field(default_factory=dict)   # role -> the model chosen to serve it (several per role)


class Candidate(BaseModel):
    schema_version: int = 1
    id: str
    run_id: str
    parent_ids: list[str] = Field(default_factory=list)
    kind: str = "architecture"    # what a candidate is, as its task says (`Task.candidate_kind`): inference, ...
    task: str
    title: str
    motivation: str = ""
    change: str = ""
    source: str
    source_hash: str = ""
    functional_hash: str = ""
    origin: str = ""             # which backend (and model) wrote it
    models: dict[str, str] = Field(default_factory=dict)   # role -> the model that served it, where one was chosen
    status: CandidateStatus = "proposed"
    evaluations: dict[str, EvalResult] = Field(default_factory=dict)
    fitness: float | None = None           # the objective's quality (higher is better) at the best fidelity run
    feasible: bool | None = None           # within every cost limit of the objective
    violations: list[str] = Field(default_factory=list)   # the limits it breaks
    seeds: dict[str, list[EvalResult]] = Field(default_factory=dict)   # per fidelity, one result per seed
    comparison: dict[str, Any] | None = None   # full-fidelity verdict against its parent, over seeds
    over_random: dict[str, Any] | None = None  # improvement over the average random architecture of the run
    analysis: str = ""
    genome: dict[str, Any] | None = None

    def model_post_init(self, _context: Any) -> None:
        if not self.source_hash:
            self.source_hash = source_hash(self.source)

    def metric(self, name: str, fidelity: str = "short") -> float | None:
        result = self.evaluations.get(fidelity)
        if result is None or result.status != "ok":
            return None
        return result.metrics.get(name)
