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


def round_half_up(x: float) -> int:
    return int(x + 0.5)


def route_after_evaluate(lab: Lab):
    def route(state: LoopState) -> str:
        return gate(lab, state)
    return route
