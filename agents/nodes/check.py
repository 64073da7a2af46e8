"""check: a static look, then the contract in the sandbox; failures go to `fix`, a bounded number of times.

A module that computes exactly what its parent computes (the same functional hash) did not
implement the planned change: it goes back to the coder with that message, before any
training, like any other failed check. A candidate that passes goes to the `proxy` rung
(`agents.nodes.evaluate`).
"""
from __future__ import annotations

from agents.event_types import FixAttempt, JobResult, ParentTwin
from agents.lab import Lab
from agents.records import Plan
from agents.nodes.review import gate
from agents.state import CandidateState
from evaluators.static_check import static_problems
from evaluators.tasks import task_of
from langgraph.graph import END
from wire.jobs import EvalResult


def make_check(lab: Lab):
    def check(state: CandidateState) -> CandidateState:
        round = state["round"]
        lab.stage(round, "check")
        candidate = lab.recorder.load(state["candidate_id"])
        attempt = state.get("fix_attempts", 0)
        problems = static_problems(candidate.source, entry=task_of(lab.spec).entry)
        if problems:
            result = EvalResult(job_id=f"{candidate.id}-static-{attempt}", candidate_id=candidate.id,
                                fidelity="check", status="invalid", message="; ".join(problems))
            lab.recorder.save_result(candidate.id, result)
            lab.events.emit(JobResult(job_id=result.job_id, candidate_id=candidate.id, fidelity="check",
                                      status=result.status, metrics={}, message=result.message, timings={}))
        else:
            result = lab.run_job(candidate, "check", attempt)
            if result.ok:
                result = refuse_parent_twin(lab, candidate, result, round)
        candidate.evaluations["check"] = result
        candidate.status = "checked" if result.ok else "proposed"
        lab.recorder.save(candidate)
        return {"check_status": "ok" if result.ok else "failed", "pending": first_rung(lab) if result.ok else None}
    return check


def make_fix(lab: Lab):
    def fix(state: CandidateState) -> CandidateState:
        round = state["round"]
        lab.stage(round, "fix")
        candidate = lab.recorder.load(state["candidate_id"])
        attempt = state.get("fix_attempts", 0) + 1
        plan = Plan.model_validate(state["plan"])
        # everything the fixer needs comes from the records: an engine keeps nothing between nodes
        repaired = lab.engine.fix(plan, candidate.source, candidate.evaluations["check"], attempt,
                                  parent=lab.recorder.load(plan.parent_id), spec=lab.spec)
        if repaired is None:
            lab.events.emit(FixAttempt(round=round, candidate_id=candidate.id, attempt=attempt, gave_up=True))
            return {"fix_attempts": attempt, "check_status": "gave_up"}
        plan, source = repaired
        candidate = candidate.model_copy(update={"source": source, "source_hash": "", "genome": plan.genome,
                                                 "title": plan.title})
        candidate.model_post_init(None)
        lab.recorder.save(candidate)
        lab.events.emit(FixAttempt(round=round, candidate_id=candidate.id, attempt=attempt, gave_up=False,
                                   detail=plan.detail, source_hash=candidate.source_hash, source=source))
        return {"fix_attempts": attempt, "plan": plan.model_dump(), "tried": [candidate.source_hash]}
    return fix


def route_after_check(lab: Lab):
    def route(state: CandidateState) -> str:
        if state.get("check_status") == "ok":
            return gate(lab, state)
        if state.get("check_status") == "gave_up" or state.get("fix_attempts", 0) >= lab.limits.loop.max_fix_attempts:
            return END
        return "fix"
    return route


def refuse_parent_twin(lab: Lab, candidate, result: EvalResult, round: int) -> EvalResult:
    """The check result, turned into a failure the coder can act on when the module is a functional twin of its parent."""
    digest = result.environment.get("functional_hash")
    if not digest or not candidate.parent_ids:
        return result
    parent = lab.recorder.load(candidate.parent_ids[0])
    parent_check = parent.evaluations.get("check")
    if parent_check is None or parent_check.environment.get("functional_hash") != digest:
        return result
    lab.events.emit(ParentTwin(round=round, candidate_id=candidate.id, parent_id=parent.id, functional_hash=digest))
    return result.model_copy(update={
        "status": "invalid",
        "message": (f"the module computes exactly the same function as its parent {parent.id} (same outputs on fixed "
                    f"inputs and the same parameter count), so the planned change '{candidate.change}' is not "
                    "implemented; change the computation itself, not only names, comments or formatting")})


def first_rung(lab: Lab) -> str:
    return "short" if lab.limits.keep_proxy is None else "proxy"
