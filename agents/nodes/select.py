"""select: start the next round and choose its parent — the best so far, or, with some probability, any."""
from __future__ import annotations

import random

from agents.lab import Lab
from agents.records import Candidate
from agents.state import LoopState


def rank_key(candidate: Candidate) -> tuple[float, float]:
    """Higher accuracy first, then lower held-out loss."""
    return (candidate.metric("accuracy") or 0.0, -(candidate.metric("heldout_loss") or float("inf")))


PARENTS = ("baseline", "evaluated")      # random references and screened candidates are never parents


def scored(candidates: list[Candidate]) -> list[Candidate]:
    """Possible parents, best first; those breaking a cost limit of the objective only when nothing else is left."""
    pool = sorted((c for c in candidates if c.status in PARENTS and c.metric("accuracy") is not None),
                  key=rank_key, reverse=True)
    feasible = [c for c in pool if c.feasible is not False]
    return feasible or pool


def make(lab: Lab):
    def select(state: LoopState) -> LoopState:
        round = state.get("round", 0) + 1
        lab.stage(round, "select")
        if round > lab.limits.rounds:
            return {"finished": f"all {lab.limits.rounds} rounds done"}
        exhausted = lab.control.exhausted(lab.events.history)
        if exhausted:
            lab.events.emit("budget_exhausted", round=round, reason=exhausted)
            return {"finished": exhausted}
        pool = scored(lab.recorder.load_all())
        rng = random.Random(f"{lab.seed}:select:{round}")
        explore = rng.random() < lab.limits.explore and len(pool) > 1
        # exploring picks among the better half, not the floor: a recall-less baseline is rarely worth a round
        parent = rng.choice(pool[1:max(2, (len(pool) + 1) // 2)]) if explore else pool[0]
        lab.events.emit("round_started", round=round)
        lab.events.emit("parents_selected", round=round, parent_ids=[parent.id], explore=explore,
                        ranking=[c.id for c in pool[:5]])
        return {"round": round, "parent_id": parent.id, "plan": None, "candidate_id": None, "fix_attempts": 0,
                "check_status": "", "pending": None, "finished": ""}
    return select


def route_after_select(state: LoopState) -> str:
    return "__end__" if state.get("finished") else "plan"
