"""analyze: the analyst compares the candidate with its parent and the baselines; findings are remembered.

A candidate that never passed `check` is marked failed and analysed too: a negative result
is a finding.
"""
from __future__ import annotations

from agents.lab import Lab
from agents.state import LoopState
from knowledge.records import Finding


def make(lab: Lab):
    def analyze(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "analyze")
        candidate = lab.recorder.load(state["candidate_id"])
        if candidate.status not in ("evaluated", "failed", "rejected"):
            candidate.status = "failed"     # never got past check
        parent = lab.recorder.load(candidate.parent_ids[0]) if candidate.parent_ids else None
        baselines = [c for c in lab.recorder.load_all() if c.status == "baseline"]
        if candidate.status == "rejected":      # a person's decision is the analysis
            text = candidate.analysis
            findings = [Finding(id=f"{lab.run_id}-{candidate.id}-rejected", text=f"{candidate.change}: {text}",
                                kind="failure", task=candidate.task, candidate_ids=[candidate.id],
                                change=candidate.change)]
        else:
            text, findings = lab.engine.analyze(candidate, parent, baselines)
        candidate.analysis = text
        lab.recorder.save(candidate)
        lab.events.emit("analysis", round=round, candidate_id=candidate.id, status=candidate.status, text=text)
        lab.stage(round, "remember")
        for finding in findings:
            stored = lab.store.add(finding)
            lab.events.emit("finding", round=round, **stored.model_dump())
        return {}
    return analyze
