"""Human review through files: what waits, and the decisions people write for it.

A waiting run records a `review_waiting` event; `archlab review` (or the review page) writes
`<run>/reviews/<interrupt-id>.json` with {action, note, source?, plan?}; the run consumes it
and records a `review_decision` event. Files make the channel work across processes and
across a crash: a decision written while no process runs is picked up by `archlab resume`.

A request is the logged `review_waiting` payload (`agents.event_types.ReviewWaiting`); the
graph's own interrupt value, a dict with the same fields, is accepted where the run asks
before its request is read back from the log (`archlab.session`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from agents.event_types import ReviewDecision, ReviewWaiting
from agents.events import Event

REVIEWS = "reviews"
Request = ReviewWaiting | Mapping[str, Any]


def waiting_requests(history: Iterable[Event]) -> list[ReviewWaiting]:
    """Review requests that have no decision yet, oldest first (one per candidate and rung)."""
    history = list(history)
    decided = {(e.data.candidate_id, e.data.fidelity) for e in history if isinstance(e.data, ReviewDecision)}
    waiting, seen = [], set()
    for event in history:
        if not isinstance(event.data, ReviewWaiting):
            continue
        key = (event.data.candidate_id, event.data.fidelity)
        if key not in decided and key not in seen:
            seen.add(key)
            waiting.append(event.data)
    return waiting


def _key(request: Request) -> tuple[str, str]:
    """(candidate id, fidelity) of a logged request, or of the graph's interrupt value (a dict)."""
    if isinstance(request, ReviewWaiting):
        return request.candidate_id, request.fidelity
    return request["candidate_id"], request["fidelity"]


def write_decision(run_dir: Path, request: Request, action: str, note: str = "", source: str | None = None,
                   plan: dict | None = None) -> Path:
    directory = Path(run_dir) / REVIEWS
    directory.mkdir(exist_ok=True)
    candidate_id, fidelity = _key(request)
    decision: dict[str, Any] = {"action": action, "note": note, "candidate_id": candidate_id, "fidelity": fidelity}
    if source is not None:
        decision["source"] = source
    if plan:
        decision["plan"] = plan
    path = directory / f"{candidate_id}-{fidelity}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(decision))
    os.replace(tmp, path)
    return path


def read_decision(run_dir: Path, request: Request) -> dict | None:
    """The decision for `request`, or None while there is none.

    Kept on disk after use: if the run dies before the review node's checkpoint, the same
    decision applies again on resume; the graph's `reviewed` list stops it applying twice.
    """
    candidate_id, fidelity = _key(request)
    path = Path(run_dir) / REVIEWS / f"{candidate_id}-{fidelity}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
