"""evaluate: train the checked candidate in the sandbox at its pending fidelity; the host scores it.

After `short`, the candidate is promoted to `full` when its accuracy ranks in the top
`promote_fraction` of everything evaluated so far (successive halving with one rung).
"""
from __future__ import annotations

from agents.lab import Lab
from agents.nodes.review import gate
from agents.nodes.select import scored
from agents.state import LoopState


def make(lab: Lab):
    def evaluate(state: LoopState) -> LoopState:
        round = state["round"]
        fidelity = state.get("pending") or "short"
        lab.stage(round, f"evaluate ({fidelity})")
        candidate = lab.recorder.load(state["candidate_id"])
        twin = functional_twin(lab, candidate, fidelity)
        if twin is not None:                # the same function was trained already: reuse, do not retrain
            earlier = twin.evaluations[fidelity]
            result = earlier.model_copy(update={"job_id": f"{candidate.id}-{fidelity}-cached",
                                                "candidate_id": candidate.id})
            lab.events.emit("cache_hit", round=round, candidate_id=candidate.id, twin_id=twin.id, fidelity=fidelity,
                            functional_hash=candidate.functional_hash)
        else:
            result = lab.run_job(candidate, fidelity)
        candidate.evaluations[fidelity] = result
        if fidelity == "short":
            candidate.status = "evaluated" if result.ok else "failed"
            candidate.fitness = candidate.metric("accuracy")
        lab.recorder.save(candidate)
        pending = None
        if fidelity == "short" and result.ok and lab.limits.promote_fraction > 0:
            pool = scored(lab.recorder.load_all())
            rank = [c.id for c in pool].index(candidate.id)
            keep = max(1, round_half_up(lab.limits.promote_fraction * len(pool)))
            promoted = rank < keep
            lab.events.emit("promotion", round=round, candidate_id=candidate.id, rank=rank + 1, pool=len(pool),
                            keep=keep, promoted=promoted, to="full")
            pending = "full" if promoted else None
        return {"pending": pending}
    return evaluate


def functional_twin(lab: Lab, candidate, fidelity: str):
    """An earlier candidate with the same functional hash (same outputs on fixed inputs, same parameter count)
    that already has an `ok` result at this fidelity, or None."""
    check = candidate.evaluations.get("check")
    digest = check.environment.get("functional_hash") if check is not None else None
    if not digest:
        return None
    candidate.functional_hash = digest
    for other in lab.recorder.load_all():
        other_check = other.evaluations.get("check")
        if other.id != candidate.id and other_check is not None \
                and other_check.environment.get("functional_hash") == digest \
                and other.evaluations.get(fidelity) is not None and other.evaluations[fidelity].ok:
            return other
    return None


def round_half_up(x: float) -> int:
    return int(x + 0.5)


def route_after_evaluate(lab: Lab):
    def route(state: LoopState) -> str:
        return gate(lab, state)
    return route
