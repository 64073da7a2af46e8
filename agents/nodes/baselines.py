"""Round 0: train the task's baselines (the short job checks the contract first), so the first parents have real scores."""
from __future__ import annotations

from agents.lab import Lab
from agents.records import Candidate
from agents.offline.engine import genome_hash
from agents.state import LoopState
from evaluators.baselines import BASELINES


def make(lab: Lab):
    def baselines(state: LoopState) -> LoopState:
        tried = list(state.get("tried", []))
        for name, (genome, source) in BASELINES.items():
            cid = f"b-{name.split('_')[0]}"
            lab.stage(0, f"baseline {name}")
            candidate = Candidate(id=cid, run_id=lab.run_id, task=lab.spec.name, title=f"baseline: {name}",
                                  motivation="reference architecture", change="baseline", source=source,
                                  origin="baseline", status="baseline", genome=genome)
            result = lab.run_job(candidate, "short")   # a short job checks the contract first
            candidate.evaluations["short"] = result
            candidate.fitness = candidate.metric("accuracy")
            lab.recorder.save(candidate)
            lab.events.emit("baseline", candidate_id=cid, status=result.status, metrics=result.metrics)
            tried += [genome_hash(genome), candidate.source_hash]
        return {"round": 0, "tried": tried}
    return baselines
