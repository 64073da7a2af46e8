"""select: propose branches until `batch + lookahead` are in flight; each gets its parent and id here.

No round barrier: this node runs again every time a branch is collected (`analyze`), so a
freed worker finds the next proposal already planned, and a slow branch (one promoted to
`full`) holds up nobody. Rounds stay as a unit of count and report: proposal k belongs to
round ceil(k / batch), the run makes `rounds * batch` proposals in all, and `round_started`
is logged with a round's first proposal.

Each parent wins a tournament (`agents.search.choose_parents`: the best of a few drawn from
the best twenty, with a novelty term for members built on less often; random references and
baselines take part) among the candidates collected so far (`Lab.peers`), and the proposal
records how many that was (`visible`), so the branch's own decisions read the same run and a
replay reproduces them however jobs interleaved. Candidate ids follow the proposal count
(c001 is the first), so a node re-run after a crash gives the same ids again. At a used-up
budget no new proposal is made and the branches in flight finish.
"""
from __future__ import annotations

from agents import scoring, search
from agents.event_types import BudgetExhausted, ParentsSelected, RoundStarted, SearchExhausted
from agents.lab import Lab
from agents.records import Candidate
from agents.state import LoopState
from evaluators.fitness import Objective
from langgraph.graph import END


def rank_key(candidate: Candidate, objective: Objective) -> tuple:
    """Sort key (reverse=True: best first) by the run's objective: `agents.scoring.sort_key`."""
    return scoring.sort_key(candidate, objective)


PARENTS = scoring.PARENTS               # screened and failed candidates are never parents


def scored(candidates: list[Candidate], objective: Objective) -> list[Candidate]:
    """Possible parents, best first by the objective; those breaking a cost limit only when nothing else is left."""
    return scoring.parents(candidates, objective)


def make(lab: Lab):
    def select(state: LoopState) -> LoopState:
        proposed = state.get("proposed", 0)
        in_flight = dict(state.get("in_flight", {}))
        finished = state.get("finished", "")
        batch = max(1, lab.limits.batch)
        room = batch + max(0, lab.limits.loop.lookahead)
        round = state.get("round", 0)
        while not finished and len(in_flight) < room:
            if proposed >= lab.limits.rounds * batch:
                finished = f"all {lab.limits.rounds} rounds done"
                break
            k = proposed + 1
            round, slot = (k - 1) // batch + 1, (k - 1) % batch
            lab.stage(round, "select")
            exhausted = lab.control.exhausted(lab.events.history)
            if exhausted:
                lab.events.emit(BudgetExhausted(round=round, reason=exhausted))
                finished = exhausted
                break
            visible = len(lab.collected())
            candidates = lab.peers(visible)
            parents = search.choose_parents(candidates, lab.objective, 1, f"{lab.seed}:select:{k}",
                                            explore=lab.limits.loop.explore)
            if not parents:
                lab.events.emit(SearchExhausted(round=round, reason="no candidate has a score to build on"))
                finished = "no candidate has a score to build on"
                break
            parent, pool = parents[0], scored(candidates, lab.objective)
            cid = f"c{k:03d}"
            if slot == 0:
                lab.events.emit(RoundStarted(round=round))
            lab.events.emit(ParentsSelected(round=round, parent_ids=[parent.id], candidate_ids=[cid],
                                            explore=bool(pool) and parent.id != pool[0].id, ranking=[c.id for c in pool[:5]], visible=visible,
                                            slot=slot, batch=batch))
            in_flight[cid] = {"round": round, "slot": slot, "batch": batch, "visible": visible,
                              "seen": len(state.get("tried", [])), "parent_id": parent.id, "candidate_id": cid,
                              "plan": None, "fix_attempts": 0, "check_status": "", "pending": None, "reviewed": [],
                              "sibling_rank": sum(f["parent_id"] == parent.id for f in in_flight.values())}
            proposed = k
        return {"round": round, "proposed": proposed, "in_flight": in_flight, "finished": finished}
    return select


def route_after_select(state: LoopState) -> str:
    """Collect the next branch to end, or end the run once none is in flight."""
    return "analyze" if state.get("in_flight") else END
