"""The `replay` backend: LLM answers and evaluation results served from a recorded run's log.

`ReplayEngine` answers plan / code / fix / analyze with what the log recorded for that
candidate (the plan context names it; in older logs a round's branches are told apart by
their slot in the round's batch, as `parents_selected` recorded it), and raises `NoProposal` again where the log found nothing
new for a parent; `ReplayEvaluator` answers each job with its recorded result. If the graph asks for something
the log does not hold (a different parent, an unknown job), the replay has diverged and
`ReplayDivergence` says where.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.engine import PlanContext
from agents.event_types import FixAttempt, PlanMade
from agents.events import Event
from agents.llm.client import Pricing
from agents.llm.context import run_objective
from agents.llm.routing import Ledger, Router
from agents.offline.engine import NoProposal
from agents.records import Candidate, Plan
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalJob, EvalResult

if TYPE_CHECKING:
    from agents.llm.settings import LLMSettings


class ReplayDivergence(RuntimeError):
    """The re-driven graph asked for something the recorded run never did."""


class ReplayEngine:
    name = "replay"

    def __init__(self, events: list[Event], llm: "LLMSettings | None" = None):
        # a node re-run after a crash logs the same event again: the first of each is the one served
        self.batches: dict[int, list[str]] = {}      # round -> its candidate ids, in slot order
        self.plans: dict[tuple[int, str], PlanMade] = {}     # (round, candidate id; "" in one-candidate logs)
        self.no_proposals: dict[tuple[int, str, str], str] = {}  # (round, candidate id, parent id) -> reason
        self.codes: dict[str, str] = {}                      # candidate id -> its module
        self.fixes: dict[str, list[FixAttempt]] = defaultdict(list)
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.analyses: dict[str, str] = {}
        for e in events:
            data = e.data
            if e.type == "parents_selected" and data.slot is None:     # a whole round's batch (older logs)
                self.batches.setdefault(data.round, data.candidate_ids)
            elif e.type == "plan":
                self.plans.setdefault((data.round, data.candidate_id), data)
            elif e.type == "no_proposal":
                self.no_proposals.setdefault((data.round, data.candidate_id, data.parent_id), data.reason)
            elif e.type == "code":
                self.codes.setdefault(data.candidate_id, data.source)
            elif e.type == "fix":
                self.fixes[data.candidate_id].append(data)
            elif e.type == "finding":
                finding = Finding.model_validate(data.model_dump(exclude={"round"}))
                self.findings[finding.candidate_ids[0]].append(finding)
            elif e.type == "analysis":
                self.analyses.setdefault(data.candidate_id, data.text)
        # several models per role: the choice is made again from the recorded calls (`agents.llm.routing`)
        self.router = Router(llm, Pricing(llm.prices)) if llm is not None else None
        self.routed = {e.data.candidate_id for e in events if e.type == "models_chosen"}
        self.ledger = Ledger().read(events)
        self.events: Any = None

    def attach(self, lab) -> None:
        """Log the choices made again (`models_chosen`) to the replay's own log."""
        self.events = lab.events

    def plan(self, context: PlanContext) -> Plan:
        batch = self.batches.get(context.round) or []
        cid = context.candidate_id or (batch[context.slot] if context.slot < len(batch) else "")
        where = f"round {context.round}" + (f" ({cid})" if cid else "")
        reason = self.no_proposals.get((context.round, cid, context.parent.id))
        if reason is not None:
            raise NoProposal(reason)
        recorded = self.plans.get((context.round, cid))
        if recorded is None:
            raise ReplayDivergence(f"{where}: the log has no plan")
        plan = Plan.model_validate(recorded.model_dump(exclude={"round"}))
        if plan.parent_id != context.parent.id:
            raise ReplayDivergence(f"{where}: the log planned on parent {plan.parent_id}, "
                                   f"the replay chose {context.parent.id}")
        if cid in self.routed and self.router is not None and self.router.active and self.events is not None:
            self.events.emit(self.router.choose(context, self.ledger,
                                                run_objective(context.objective, context.spec.name)))
        return plan

    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec, **context) -> str:
        if plan.candidate_id not in self.codes:       # the plan node names the candidate the plan is for
            raise ReplayDivergence(f"{plan.candidate_id or 'a candidate'}: the log has no code for the plan "
                                   f"{plan.title!r}")
        return self.codes[plan.candidate_id]

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, **context):
        cid = failure.candidate_id
        recorded = [f for f in self.fixes.get(cid, []) if f.attempt == attempt]
        if not recorded:
            raise ReplayDivergence(f"{cid}: the log has no fix attempt {attempt}")
        fix = recorded[0]
        if fix.gave_up:
            return None
        return plan.model_copy(update={"detail": plan.detail if fix.detail is None else fix.detail}), fix.source

    def analyze(self, candidate: Candidate, parent, baselines):
        if candidate.id not in self.analyses:
            raise ReplayDivergence(f"{candidate.id}: the log has no analysis")
        return self.analyses[candidate.id], self.findings.get(candidate.id, [])


class ReplayEvaluator:
    """Answers each job with the result the log recorded for its job id."""

    name = "replay"
    capabilities = frozenset()

    def __init__(self, events: list[Event], llm: "LLMSettings | None" = None):
        self.results: dict[str, EvalResult] = {e.data.job_id: e.data.result for e in events
                                               if e.type == "result" and e.data.result is not None}

    def __call__(self, sandbox, job: EvalJob, jobdir: Path) -> EvalResult:
        if job.job_id not in self.results:
            raise ReplayDivergence(f"the replay ran job {job.job_id}, which the log never ran")
        return self.results[job.job_id].model_copy(deep=True)      # the caller may annotate its copy

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        return self(self, job, jobdir)
