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
        self.plans = {e.payload["round"]: e.payload for e in events if e.type == "plan"}
        self.codes = {e.payload["round"]: e.payload["source"] for e in events if e.type == "code"}
        self.current_round = 0
        self.fixes: dict[str, list[dict]] = defaultdict(list)
        for e in events:
            if e.type == "fix":
                self.fixes[e.payload["candidate_id"]].append(e.payload)
        self.analyses = {e.payload["candidate_id"]: e.payload["text"] for e in events if e.type == "analysis"}
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        for e in events:
            if e.type == "finding":
                record = {k: v for k, v in e.payload.items() if k != "round"}
                self.findings[record["candidate_ids"][0]].append(Finding.model_validate(record))

    def plan(self, context: PlanContext) -> Plan:
        recorded = self.plans.get(context.round)
        if recorded is None:
            raise ReplayDivergence(f"round {context.round}: the log has no plan")
        self.current_round = context.round
        plan = Plan.model_validate({k: v for k, v in recorded.items() if k != "round"})
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
        recorded = [f for f in self.fixes.get(cid, []) if f["attempt"] == attempt]
        if not recorded:
            raise ReplayDivergence(f"{cid}: the log has no fix attempt {attempt}")
        fix = recorded[0]
        if fix.get("gave_up"):
            return None
        return plan.model_copy(update={"detail": fix.get("detail", plan.detail)}), fix["source"]

    def analyze(self, candidate: Candidate, parent, baselines):
        if candidate.id not in self.analyses:
            raise ReplayDivergence(f"{candidate.id}: the log has no analysis")
        return self.analyses[candidate.id], self.findings.get(candidate.id, [])


class ReplayEvaluator:
    """Answers each job with the result the log recorded for its job id."""

    name = "replay"
    capabilities = frozenset()

    def __init__(self, events: list[Event]):
        self.results = {e.payload["job_id"]: e.payload["result"] for e in events
                        if e.type == "result" and "result" in e.payload}

    def __call__(self, sandbox, job: EvalJob, jobdir: Path) -> EvalResult:
        if job.job_id not in self.results:
            raise ReplayDivergence(f"the replay ran job {job.job_id}, which the log never ran")
        return EvalResult.model_validate(self.results[job.job_id])

    def run(self, job: EvalJob, jobdir: Path) -> EvalResult:
        return self(self, job, jobdir)
