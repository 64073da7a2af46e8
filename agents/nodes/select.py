"""select: start the next round, choose a parent for each of its `batch` candidates, and fan out.

Each parent is the best so far or, with some probability, one of the better half. The round's
candidate ids are fixed here, so every branch knows its siblings (and keeps them out of its
decisions) and a resumed run numbers on where it stopped.
"""
from __future__ import annotations

import random

from agents import scoring
from agents.lab import Lab
from agents.records import Candidate
from agents.state import LoopState
from evaluators.fitness import Objective
from langgraph.graph import END
from langgraph.types import Send


def rank_key(candidate: Candidate, objective: Objective) -> tuple:
    """Sort key (reverse=True: best first) by the run's objective: `agents.scoring.sort_key`."""
    return scoring.sort_key(candidate, objective)


PARENTS = scoring.PARENTS               # random references and screened candidates are never parents


def scored(candidates: list[Candidate], objective: Objective) -> list[Candidate]:
    """Possible parents, best first by the objective; those breaking a cost limit only when nothing else is left."""
    return scoring.parents(candidates, objective)


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
        candidates = lab.recorder.load_all()
        pool = scored(candidates, lab.objective)
        parents, explored = [], []
        for slot in range(lab.limits.batch):
            # slot 0 keeps the seed stream a one-candidate round always had
            rng = random.Random(f"{lab.seed}:select:{round}" + (f":{slot}" if slot else ""))
            explore = rng.random() < lab.limits.explore and len(pool) > 1
            # exploring picks among the better half, not the floor: a recall-less baseline is rarely worth a round
            parents.append(rng.choice(pool[1:max(2, (len(pool) + 1) // 2)]) if explore else pool[0])
            explored.append(explore)
        earlier = [cid for e in lab.events.history if e.type == "parents_selected" and e.data.round < round
                   for cid in e.data.candidate_ids]
        batch = candidate_ids([c.id for c in candidates] + earlier, lab.limits.batch)
        lab.events.emit("round_started", round=round)
        lab.events.emit("parents_selected", round=round, parent_ids=[p.id for p in parents], explore=any(explored),
                        candidate_ids=batch, ranking=[c.id for c in pool[:5]])
        return {"round": round, "batch": batch, "parents": [p.id for p in parents], "finished": ""}
    return select


def candidate_ids(taken: list[str], count: int) -> list[str]:
    """The next `count` proposal ids (c001, c002, ...), numbered on from every id already given out (on disk, or to
    an earlier round's branch that wrote no candidate), so no id is ever given twice."""
    numbers = [int(cid[1:]) for cid in taken if cid[:1] == "c" and cid[1:].isdigit()]
    first = max(numbers, default=0) + 1
    return [f"c{n:03d}" for n in range(first, first + count)]


def route_after_select(state: LoopState):
    """One `Send` per candidate of the round into the `candidate` subgraph, or the end."""
    if state.get("finished"):
        return END
    seen = list(state.get("tried", []))
    return [Send("candidate", {"round": state["round"], "slot": slot, "batch": state["batch"], "seen": seen,
                               "parent_id": parent_id, "candidate_id": cid, "plan": None, "fix_attempts": 0,
                               "check_status": "", "pending": None, "reviewed": []})
            for slot, (cid, parent_id) in enumerate(zip(state["batch"], state["parents"]))]
