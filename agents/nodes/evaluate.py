"""evaluate: train the checked candidate at the `short` fidelity in the sandbox; the host scores it."""
from __future__ import annotations

from agents.lab import Lab
from agents.state import LoopState


def make(lab: Lab):
    def evaluate(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "evaluate")
        candidate = lab.recorder.load(state["candidate_id"])
        result = lab.run_job(candidate, "short")
        candidate.evaluations["short"] = result
        candidate.status = "evaluated" if result.ok else "failed"
        candidate.fitness = candidate.metric("accuracy")
        lab.recorder.save(candidate)
        return {}
    return evaluate
