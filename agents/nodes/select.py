"""select: start the next round, choose a parent for each of its `batch` candidates, and fan out.

Each parent wins a tournament over the population (`agents.search.choose_parents`: the best
of a few drawn from the best twenty, with a novelty term for members built on less often;
random references and baselines take part). The round's candidate ids are fixed here, so every branch knows its siblings (and keeps them out of its
decisions) and a resumed run numbers on where it stopped.
"""
from __future__ import annotations

from agents import scoring, search
from agents.lab import Lab
from agents.records import Candidate
from agents.state import LoopState
from evaluators.fitness import Objective
from langgraph.graph import END
from langgraph.types import Send


def rank_key(candidate: Candidate, objective: Objective) -> tuple:
    """Sort key (reverse=True: best first) by the run's objective: `agents.scoring.sort_key`."""
    return scoring.sort_key(candidate, objective)


PARENTS = scoring.PARENTS               # screened and failed candidates are never parents


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
        parents = search.choose_parents(candidates, lab.objective, lab.limits.batch, f"{lab.seed}:select:{round}",
                                        explore=lab.limits.explore)
        if not parents:
            lab.events.emit("search_exhausted", round=round, reason="no candidate has a score to build on")
            return {"finished": "no candidate has a score to build on"}
        earlier = [cid for e in lab.events.history if e.type == "parents_selected" and e.data.round < round
                   for cid in e.data.candidate_ids]
        batch = candidate_ids([c.id for c in candidates] + earlier, lab.limits.batch)
        lab.events.emit("round_started", round=round)
        lab.events.emit("parents_selected", round=round, parent_ids=[p.id for p in parents],
                        explore=any(p.id != pool[0].id for p in parents),
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
    parents = state["parents"]
    return [Send("candidate", {"round": state["round"], "slot": slot, "batch": state["batch"], "seen": seen,
                               "parent_id": parent_id, "candidate_id": cid, "plan": None, "fix_attempts": 0,
                               "check_status": "", "pending": None, "reviewed": [],
                               "sibling_rank": parents[:slot].count(parent_id)})
            for slot, (cid, parent_id) in enumerate(zip(state["batch"], parents))]
