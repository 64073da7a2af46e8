"""The `replay` backend: LLM answers and evaluation results served from a recorded run's log.

`ReplayEngine` answers plan / code / fix / analyze with what the log recorded for that round;
`ReplayEvaluator` answers each job with its recorded result. If the graph asks for something
the log does not hold (a different parent, an unknown job), the replay has diverged and
`ReplayDivergence` says where.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from agents.engine import PlanContext
from agents.event_types import FixAttempt, PlanMade
from agents.events import Event
from agents.records import Candidate, Plan
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalJob, EvalResult


class ReplayDivergence(RuntimeError):
    """The re-driven graph asked for something the recorded run never did."""


class ReplayEngine:
    name = "replay"

    def __init__(self, events: list[Event]):
        self.plans: dict[int, PlanMade] = {e.data.round: e.data for e in events if e.type == "plan"}
        self.codes = {e.data.round: e.data.source for e in events if e.type == "code"}
        self.current_round = 0
        self.fixes: dict[str, list[FixAttempt]] = defaultdict(list)
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        for e in events:
            if e.type == "fix":
                self.fixes[e.data.candidate_id].append(e.data)
            elif e.type == "finding":
                finding = Finding.model_validate(e.data.model_dump(exclude={"round"}))
                self.findings[finding.candidate_ids[0]].append(finding)
        self.analyses = {e.data.candidate_id: e.data.text for e in events if e.type == "analysis"}

    def plan(self, context: PlanContext) -> Plan:
        recorded = self.plans.get(context.round)
        if recorded is None:
            raise ReplayDivergence(f"round {context.round}: the log has no plan")
        self.current_round = context.round
        plan = Plan.model_validate(recorded.model_dump(exclude={"round"}))
        if plan.parent_id != context.parent.id:
            raise ReplayDivergence(f"round {context.round}: the log planned on parent {plan.parent_id}, "
                                   f"the replay chose {context.parent.id}")
        return plan

    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec) -> str:
        if self.current_round not in self.codes:
            raise ReplayDivergence(f"round {self.current_round}: the log has no code")
        return self.codes[self.current_round]

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int):
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

    def __init__(self, events: list[Event]):
        self.results: dict[str, EvalResult] = {e.data.job_id: e.data.result for e in events
                                               if e.type == "result" and e.data.result is not None}

    def __call__(self, sandbox, job: EvalJob, jobdir: Path) -> EvalResult:
        if job.job_id not in self.results:
            raise ReplayDivergence(f"the replay ran job {job.job_id}, which the log never ran")
        return self.results[job.job_id].model_copy(deep=True)      # the caller may annotate its copy

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        return self(self, job, jobdir)
