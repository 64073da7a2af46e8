"""review: by policy, stop on a LangGraph interrupt and wait for a person's decision.

Policies: `never`; `always` (before a candidate's first training job); `before-full`
(before a `full` evaluation); `new-idea` (before training a kind of change this run has not
tried yet; the round's other candidates do not count, as they run at the same time). Each
branch waits for its own review: while one candidate waits, its siblings' jobs go on. The
decision — approve, reject, or edit (the plan's words or the code) with a note — resumes
that branch and is recorded as an event.
"""
from __future__ import annotations

from langgraph.types import interrupt

from agents.event_types import ReviewDecision
from agents.lab import Lab
from agents.records import Plan
from agents.state import CandidateState
from langgraph.graph import END

ACTIONS = ("approve", "reject", "edit")


def needs_review(lab: Lab, state: CandidateState) -> bool:
    pending = state.get("pending")
    key = f"{state.get('candidate_id')}:{pending}"
    if pending is None or key in state.get("reviewed", []):
        return False
    policy = lab.limits.review_policy
    if policy == "always":
        return pending == "short"
    if policy == "before-full":
        return pending == "full"
    if policy == "new-idea" and pending == "short":
        change = (state.get("plan") or {}).get("change")
        # branches in flight run concurrently: what they try is not "earlier"
        earlier = [c for c in lab.peers(state.get("visible")) if c.id != state["candidate_id"] and c.change == change]
        return not earlier
    return False


def gate(lab: Lab, state: CandidateState) -> str:
    """Where a candidate with a pending evaluation goes next."""
    if state.get("pending") is None:
        return END
    return "review" if needs_review(lab, state) else "evaluate"


def make(lab: Lab):
    def review(state: CandidateState) -> CandidateState:
        round = state["round"]
        lab.stage(round, "review")
        candidate = lab.recorder.load(state["candidate_id"])
        pending = state["pending"]
        request = {"candidate_id": candidate.id, "round": round, "fidelity": pending, "policy": lab.limits.review_policy,
                   "plan": state.get("plan"), "source": candidate.source, "parent_id": candidate.parent_ids[0],
                   "metrics": {f: r.metrics for f, r in candidate.evaluations.items()}}
        decision = interrupt(request)               # the graph stops here until a person decides
        action = decision.get("action") if isinstance(decision, dict) else None
        if action not in ACTIONS:
            raise ValueError(f"review decision must have action in {ACTIONS}, got {decision!r}")
        note = str(decision.get("note", ""))
        lab.events.emit(ReviewDecision(round=round, candidate_id=candidate.id, fidelity=pending, action=action,
                                       note=note, edited_code=bool(decision.get("source")), edited_plan=bool(decision.get("plan"))))
        reviewed = list(state.get("reviewed", [])) + [f"{candidate.id}:{pending}"]
        if action == "reject":
            candidate.status = "rejected"
            candidate.analysis = f"Rejected by a reviewer before {pending} evaluation: {note}".strip()
            lab.recorder.save(candidate)
            return {"pending": None, "reviewed": reviewed}
        update: CandidateState = {"reviewed": reviewed}
        if action == "edit" and decision.get("plan"):
            plan = Plan.model_validate({**(state.get("plan") or {}), **decision["plan"]})
            candidate.title, candidate.motivation = plan.title, plan.motivation
            update["plan"] = plan.model_dump()
        if action == "edit" and decision.get("source"):
            candidate.source = decision["source"]
            candidate.source_hash = ""
            candidate.model_post_init(None)
            candidate.origin = f"{candidate.origin}+human"
            candidate.evaluations = {}
            update.update(check_status="edited", pending=None, fix_attempts=state.get("fix_attempts", 0) + 1)
        lab.recorder.save(candidate)
        return update
    return review


def route_after_review(lab: Lab):
    def route(state: CandidateState) -> str:
        if state.get("check_status") == "edited":
            return "check"                          # edited code is checked before anything trains it
        return gate(lab, state)
    return route
