"""The research graph's state: small, typed, checkpointed after every node.

Two levels. `LoopState` is the run's: the round, the round's batch of candidate ids, what
was tried, why the run ended. `CandidateState` is one branch of a round — one candidate
going plan → code → check (→ fix) → (review) → evaluate, checkpointed node by node inside
its own subgraph. Branches of a round run concurrently and never see each other's state;
what a branch hands back to the run (`BranchOutput`) is merged by reducers, so the order in
which branches finish changes nothing.

Candidates themselves live on disk (`candidates/<id>/candidate.json`); the state carries
ids and the in-flight plan, so checkpoints stay small and a resumed run reads the records.
"""
from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class LoopState(TypedDict, total=False):
    round: int                      # the round in progress (0 = baselines)
    batch: list[str]                # the candidate ids this round proposes, one per branch
    parents: list[str]              # the parent chosen for each branch, in the order of `batch`
    tried: Annotated[list[str], operator.add]       # genome / source hashes already proposed
    exhausted: Annotated[list[str], operator.add]   # branches that found nothing new to propose
    finished: str                   # why the run ended ("" while it goes on)


class CandidateState(TypedDict, total=False):
    round: int
    slot: int                       # this branch's place in the round's batch
    batch: list[str]                # every candidate id of the round (siblings are kept out of its decisions)
    seen: list[str]                 # `tried` as the round started
    parent_id: str                  # the parent chosen for this branch
    sibling_rank: int               # how many earlier branches of the round build on the same parent
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
