"""Human review through files: what waits, and the decisions people write for it.

A waiting run records a `review_waiting` event; `archlab review` (or the review page) writes
`<run>/reviews/<interrupt-id>.json` with {action, note, source?, plan?}; the run consumes it
and records a `review_decision` event. Files make the channel work across processes and
across a crash: a decision written while no process runs is picked up by `archlab resume`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from agents.events import Event

REVIEWS = "reviews"


def pending_reviews(run_dir: Path, history: list[Event]) -> list[dict]:
    """Review requests that have no decision yet, oldest first."""
    decided = {(e.payload.get("candidate_id"), e.payload.get("fidelity")) for e in history if e.type == "review_decision"}
    waiting, seen = [], set()
    for event in history:
        if event.type != "review_waiting":
            continue
        key = (event.payload.get("candidate_id"), event.payload.get("fidelity"))
        if key not in decided and key not in seen:
            seen.add(key)
            waiting.append(event.payload)
    return waiting


def write_decision(run_dir: Path, request: dict, action: str, note: str = "", source: str | None = None,
                   plan: dict | None = None) -> Path:
    directory = Path(run_dir) / REVIEWS
    directory.mkdir(exist_ok=True)
    decision = {"action": action, "note": note, "candidate_id": request["candidate_id"],
                "fidelity": request["fidelity"]}
    if source is not None:
        decision["source"] = source
    if plan:
        decision["plan"] = plan
    path = directory / f"{request['candidate_id']}-{request['fidelity']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(decision))
    os.replace(tmp, path)
    return path


def read_decision(run_dir: Path, request: dict) -> dict | None:
    """The decision for `request`, or None while there is none.

    Kept on disk after use: if the run dies before the review node's checkpoint, the same
    decision applies again on resume; the graph's `reviewed` list stops it applying twice.
    """
    path = Path(run_dir) / REVIEWS / f"{request['candidate_id']}-{request['fidelity']}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
