"""The research graph's state: small, typed, checkpointed after every node.

Two levels. `LoopState` is the run's: how many proposals were made and collected, the
branches in flight (each with the state it started from), what was tried, why the run
ended. `CandidateState` is one branch — one candidate going plan → code → check (→ fix) →
(review) → evaluate, checkpointed node by node in its own graph thread
(`agents.scheduler.BranchPool`). Branches run concurrently and never see each other's state;
each reads the run as it stood when it was proposed (`visible`: round 0 and the branches
collected before it), so what it decides does not depend on which other job finished first.
What a finished branch hands back to the run (`BranchOutput`) is merged by reducers.

Candidates themselves live on disk (`candidates/<id>/candidate.json`); the state carries
ids and the in-flight plan, so checkpoints stay small and a resumed run reads the records.
"""
from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class LoopState(TypedDict, total=False):
    round: int                      # the round of the latest proposal (0 = baselines); a round is `batch` proposals
    proposed: int                   # proposals made so far (c001 is the first)
    collected: int                  # branches collected so far (their order: `candidate_collected` events)
    in_flight: dict[str, dict]      # candidate id -> the CandidateState its branch starts from, until collected
                                    # (its `seen` as a count: the first that many of `tried`)
    idle: int                       # branches collected in a row that found nothing new to propose
    tried: Annotated[list[str], operator.add]       # genome / source hashes already proposed
    exhausted: Annotated[list[str], operator.add]   # branches that found nothing new to propose
    finished: str                   # why the run ended ("" while it goes on)


class CandidateState(TypedDict, total=False):
    round: int
    slot: int                       # this branch's place in its round (0 .. batch - 1)
    batch: int                      # proposals per round
    visible: int                    # collected candidates (round 0 first) this branch's decisions may read
    seen: list[str]                 # `tried` as the branch was proposed
    parent_id: str                  # the parent chosen for this branch
    sibling_rank: int               # branches in flight on the same parent when this one was proposed
    candidate_id: str               # the candidate this branch proposes
    plan: dict[str, Any] | None     # the Plan being implemented
    fix_attempts: int               # check failures sent back to the coder
    check_status: str               # "ok" | "failed" | "gave_up" | "edited" | "no_proposal" | "plan_failed"
    pending: str | None             # the fidelity to evaluate next ("proxy", "short", "full"), None when done
    reviewed: list[str]             # "<candidate>:<fidelity>" gates a person has already passed
    tried: Annotated[list[str], operator.add]       # hashes this branch proposed
    exhausted: Annotated[list[str], operator.add]


class BranchOutput(TypedDict, total=False):
    """What a finished branch hands back to the run."""

    tried: Annotated[list[str], operator.add]
    exhausted: Annotated[list[str], operator.add]
