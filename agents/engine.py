"""The research engine interface: what the planner, coder and analyst roles must answer.

Backends: `offline` (deterministic heuristics over building blocks, in `agents.offline`),
`openai` (an OpenAI-compatible endpoint, in `agents.llm`), replay from a log. The graph talks
only to this interface; the application shell (`archlab.backends`) chooses and builds one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agents.records import Candidate, Plan
from evaluators.fitness import Objective
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalResult


@dataclass
class PlanContext:
    spec: TaskSpec
    round: int
    parent: Candidate
    candidates: list[Candidate]                    # what the run had collected when this branch was proposed
    findings: list[tuple[Finding, float]] = field(default_factory=list)  # nearest findings, with distance
    tried: set[str] = field(default_factory=set)   # genome / source hashes already proposed
    slot: int = 0                                  # which of the round's proposals this is (0-based)
    batch: int = 1                                 # proposals per round; branches in flight never see each other
    sibling_rank: int = 0                          # branches in flight on the same parent (propose differently)
    candidate_id: str = ""                         # the candidate the plan is for
    objective: Objective | None = None             # the run's objective (None: the engine's own)
    collected: list[str] | None = None             # the branches collected before this one (None: every candidate)


class ResearchEngine(Protocol):
    name: str

    def plan(self, context: PlanContext) -> Plan: ...

    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec, *,
             candidates: list[Candidate] | None = None) -> str:
        """The candidate module; `candidates` are the run's records, for telling a copy of an evaluated module."""

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, *, parent: Candidate | None = None,
            spec: TaskSpec | None = None, candidates: list[Candidate] | None = None) -> tuple[Plan, str] | None:
        """A repaired (plan, module) after a failed check, or None to give up.

        An engine keeps nothing between calls (a resumed run builds a new one, and a round's
        candidates are drafted from several threads): `parent` (the plan's parent record) and
        `spec` are what it needs to show the contract and the parent again. Callers should pass
        them; an engine may fall back to the run it is attached to when they are None.
        """

    def analyze(self, candidate: Candidate, parent: Candidate | None,
                baselines: list[Candidate]) -> tuple[str, list[Finding]]:
        """The analysis text and the findings to remember."""


class ProposalFailed(RuntimeError):
    """The planner's answers could not be turned into a proposal this time (the model's fault, not the run's):
    the branch ends without a candidate, the reason is logged, and the run goes on."""


class EngineUnavailable(RuntimeError):
    """The chosen engine cannot run here (missing settings); a configuration fault."""
