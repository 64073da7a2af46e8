"""The research graph's state: small, typed, checkpointed after every node.

Candidates themselves live on disk (`candidates/<id>/candidate.json`); the state carries
ids and the in-flight plan, so checkpoints stay small and a resumed run reads the records.
"""
from __future__ import annotations

from typing import Any, TypedDict


class LoopState(TypedDict, total=False):
    round: int                      # the round in progress (0 = baselines)
    parent_id: str                  # the parent chosen for this round
    plan: dict[str, Any] | None     # the Plan being implemented
    candidate_id: str | None        # the candidate of this round
    fix_attempts: int               # check failures sent back to the coder this round
    check_status: str               # "ok" | "failed" | "gave_up" | "edited"
    pending: str | None             # the fidelity to evaluate next ("short", "full"), None when done
    reviewed: list[str]             # "<candidate>:<fidelity>" gates a person has already passed
    finished: str                   # why the run ended ("" while it goes on)
    tried: list[str]                # genome / source hashes already proposed
