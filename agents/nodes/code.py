"""code: the coder writes the plan as a whole candidate module (the id was fixed by `select`)."""
from __future__ import annotations

from agents.event_types import CodeWritten
from agents.lab import Lab
from agents.offline.engine import genome_hash
from agents.records import Candidate, Plan
from agents.state import CandidateState
from evaluators.tasks import task_of


def make(lab: Lab):
    def code(state: CandidateState) -> CandidateState:
        round = state["round"]
        lab.stage(round, "code")
        plan = Plan.model_validate(state["plan"])
        parent = lab.recorder.load(plan.parent_id)
        source = lab.engine.code(plan, parent, lab.spec)
        candidate = Candidate(id=state["candidate_id"], run_id=lab.run_id, parent_ids=[plan.parent_id],
                              task=lab.spec.name, title=plan.title, motivation=plan.motivation, change=plan.change,
                              source=source, origin=lab.engine.name, genome=plan.genome, models=plan.models,
                              kind=task_of(lab.spec).candidate_kind)
        lab.recorder.save(candidate)
        lab.events.emit(CodeWritten(round=round, candidate_id=candidate.id, parent_id=plan.parent_id,
                                    source_hash=candidate.source_hash, source=source))
        tried = [candidate.source_hash]
        if plan.genome:
            tried.append(genome_hash(plan.genome))
        return {"tried": tried}
    return code
