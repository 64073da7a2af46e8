"""check: a static look, then the contract in the sandbox; failures go to `fix`, a bounded number of times.

A candidate that passes goes to the `proxy` rung (`agents.nodes.evaluate`).
"""
from __future__ import annotations

from agents.lab import Lab
from agents.records import Plan
from agents.state import LoopState
from wire.jobs import EvalResult
from evaluators.static_check import static_problems
from agents.nodes.review import gate


def make_check(lab: Lab):
    def check(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "check")
        candidate = lab.recorder.load(state["candidate_id"])
        attempt = state.get("fix_attempts", 0)
        problems = static_problems(candidate.source)
        if problems:
            result = EvalResult(job_id=f"{candidate.id}-static-{attempt}", candidate_id=candidate.id,
                                fidelity="check", status="invalid", message="; ".join(problems))
            lab.recorder.save_result(candidate.id, result)
            lab.events.emit("result", job_id=result.job_id, candidate_id=candidate.id, fidelity="check",
                            status=result.status, metrics={}, message=result.message, timings={})
        else:
            result = lab.run_job(candidate, "check", attempt)
        candidate.evaluations["check"] = result
        candidate.status = "checked" if result.ok else "proposed"
        lab.recorder.save(candidate)
        return {"check_status": "ok" if result.ok else "failed", "pending": first_rung(lab) if result.ok else None}
    return check


def make_fix(lab: Lab):
    def fix(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "fix")
        candidate = lab.recorder.load(state["candidate_id"])
        attempt = state.get("fix_attempts", 0) + 1
        plan = Plan.model_validate(state["plan"])
        repaired = lab.engine.fix(plan, candidate.source, candidate.evaluations["check"], attempt)
        if repaired is None:
            lab.events.emit("fix", round=round, candidate_id=candidate.id, attempt=attempt, gave_up=True)
            return {"fix_attempts": attempt, "check_status": "gave_up"}
        plan, source = repaired
        candidate = candidate.model_copy(update={"source": source, "source_hash": "", "genome": plan.genome,
                                                 "title": plan.title})
        candidate.model_post_init(None)
        lab.recorder.save(candidate)
        lab.events.emit("fix", round=round, candidate_id=candidate.id, attempt=attempt, gave_up=False,
                        detail=plan.detail, source_hash=candidate.source_hash, source=source)
        return {"fix_attempts": attempt, "plan": plan.model_dump(), "tried": list(state.get("tried", [])) + [candidate.source_hash]}
    return fix


def route_after_check(lab: Lab):
    def route(state: LoopState) -> str:
        if state.get("check_status") == "ok":
            return gate(lab, state)
        if state.get("check_status") == "gave_up" or state.get("fix_attempts", 0) >= lab.limits.max_fix_attempts:
            return "analyze"
        return "fix"
    return route


def first_rung(lab: Lab) -> str:
    return "short" if lab.limits.keep_proxy is None else "proxy"
