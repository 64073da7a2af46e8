"""plan: retrieve the nearest findings, then ask the planner for a hypothesis and one change."""
from __future__ import annotations

from agents.engine import PlanContext
from agents.lab import Lab
from agents.nodes.select import scored
from agents.offline.engine import NoProposal
from agents.state import LoopState


def make(lab: Lab):
    def plan(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "plan")
        candidates = lab.recorder.load_all()
        by_id = {c.id: c for c in candidates}
        # the chosen parent first; if nothing new can be proposed for it, the next best
        order = [by_id[state["parent_id"]]] + [c for c in scored(candidates) if c.id != state["parent_id"]]
        for parent in order:
            query = f"{lab.spec.name}: changes to {parent.title}. {parent.analysis}"
            findings = lab.store.nearest(query, k=lab.limits.findings_k, task=lab.spec.name)
            lab.events.emit("retrieval", round=round, query=query[:500],
                            finding_ids=[f.id for f, _ in findings],
                            distances=[round_to(d) for _, d in findings])
            context = PlanContext(spec=lab.spec, round=round, parent=parent, candidates=candidates,
                                  findings=findings, tried=set(state.get("tried", [])))
            try:
                proposal = lab.engine.plan(context)
            except NoProposal as exc:
                lab.events.emit("no_proposal", round=round, parent_id=parent.id, reason=str(exc))
                continue
            lab.events.emit("plan", round=round, **proposal.model_dump())
            return {"plan": proposal.model_dump(), "parent_id": parent.id}
        raise NoProposal("no candidate has an untried change left; raise the search space or stop the run")
    return plan


def round_to(value: float) -> float:
    return float(f"{value:.4f}")
