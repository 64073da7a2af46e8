"""plan: retrieve the nearest findings, then ask the planner for a hypothesis and one change.

If nothing new can be proposed for the branch's parent, the next best parents are tried; a
branch with nothing left to propose ends without a candidate (`no_proposal`, logged with the
reason), and a round in which every branch ends so finishes the run cleanly. A plan is logged
under `Lab.claiming`: a genome another branch in flight planned meanwhile (two branches planning
at the same moment) is added to the tried and the plan is made again. A planner whose
answers stay unusable (`ProposalFailed`) ends only its branch, logged as `plan_failed`.
"""
from __future__ import annotations

from agents.engine import PlanContext, ProposalFailed
from agents.event_types import BranchExhausted, NoProposalFound, PlanFailed, PlanMade, Retrieval
from agents.lab import Lab
from agents.nodes.select import scored
from agents.offline.engine import NoProposal, genome_hash
from agents.state import CandidateState
from langgraph.graph import END


CLAIM_ATTEMPTS = 3      # plans made again when a branch in flight claimed the same genome meanwhile


def make(lab: Lab):
    def plan(state: CandidateState) -> CandidateState:
        round = state["round"]
        lab.stage(round, "plan")
        visible = state.get("visible")
        candidates = lab.peers(visible)     # the run as it stood when this branch was proposed
        collected = lab.collected()[:visible] if visible is not None else None
        by_id = {c.id: c for c in candidates}
        # the chosen parent first; if nothing new can be proposed for it, the next best
        order = [by_id[state["parent_id"]]] + [c for c in scored(candidates, lab.objective)
                                               if c.id != state["parent_id"]]
        # what was tried when the branch was proposed, and what the branches in flight have planned since
        in_flight = {genome_hash(p.genome) for p in lab.plans_in_flight(state["candidate_id"]) if p.genome}
        tried = set(state.get("seen", [])) | set(state.get("tried", [])) | in_flight
        for parent in order:
            query = f"{lab.spec.name}: changes to {parent.title}. {parent.analysis}"
            findings = lab.store.nearest(query, k=lab.limits.findings_k, task=lab.spec.name,
                                         keep=lab.keeps_finding(visible))
            lab.events.emit(Retrieval(round=round, candidate_id=state["candidate_id"], query=query[:500],
                                      finding_ids=[f.id for f, _ in findings],
                                      distances=[round_to(d) for _, d in findings]))
            for attempt in range(CLAIM_ATTEMPTS):
                context = PlanContext(spec=lab.spec, round=round, parent=parent, candidates=candidates,
                                      findings=findings, tried=tried, slot=state.get("slot", 0),
                                      batch=state.get("batch") or 1, candidate_id=state["candidate_id"],
                                      sibling_rank=state.get("sibling_rank", 0) if parent.id == state["parent_id"]
                                      else 0, objective=lab.objective, collected=collected)
                try:
                    proposal = lab.engine.plan(context)
                except NoProposal as exc:
                    lab.events.emit(NoProposalFound(round=round, candidate_id=state["candidate_id"],
                                                    parent_id=parent.id, reason=str(exc)))
                    break
                except ProposalFailed as exc:     # the planner's answers were unusable: this branch ends, the run goes on
                    lab.events.emit(PlanFailed(round=round, candidate_id=state["candidate_id"], parent_id=parent.id,
                                               reason=str(exc)[:2000]))
                    return {"plan": None, "check_status": "plan_failed"}
                proposal = proposal.model_copy(update={"candidate_id": state["candidate_id"]})
                # claimed under a lock: a branch planning at the same moment sees this plan, or this one sees its
                # (a replay serves the recorded plans, which never collided)
                with lab.claiming:
                    planned = {genome_hash(p.genome) for p in lab.plans_in_flight(state["candidate_id"]) if p.genome}
                    if (proposal.genome and genome_hash(proposal.genome) in planned - tried
                            and lab.collect_order is None and attempt + 1 < CLAIM_ATTEMPTS):
                        tried = tried | planned          # planned meanwhile by another branch: plan again
                        continue
                    lab.events.emit(PlanMade(round=round, **proposal.model_dump()))
                return {"plan": proposal.model_dump(), "parent_id": parent.id, "check_status": ""}
        reason = "no candidate has an untried change left"
        lab.events.emit(BranchExhausted(round=round, candidate_id=state["candidate_id"], reason=reason))
        return {"plan": None, "check_status": "no_proposal", "exhausted": [state["candidate_id"]]}
    return plan


def route_after_plan(state: CandidateState) -> str:
    return END if state.get("check_status") in ("no_proposal", "plan_failed") else "code"


def round_to(value: float) -> float:
    return float(f"{value:.4f}")
