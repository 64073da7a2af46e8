"""analyze: once every branch of the round is done, the analyst compares each candidate with its parent and
the baselines, in candidate-id order; findings are remembered.

A candidate that never passed `check` is marked failed and analysed too: a negative result
is a finding. The fixed order makes the analyses, the findings and what the next round
retrieves independent of the order in which the round's jobs finished. A round in which no
branch found anything new to propose ends the run.

Before the analyst writes, a candidate not judged at `full` gets its verdict against the
parent at the rung both reached (`agents.scoring.verdict`, against the run's noise floor),
logged as a `comparison` event; the analysis ends with that verdict's sentence, the one
`show` and the review page print. A round that changed the noise floor (a baseline trained
at `full` as a parent) logs the new one.
"""
from __future__ import annotations

from agents import anchors, scoring
from agents.lab import Lab
from agents.nodes.baselines import log_noise_floor
from agents.nodes.evaluate import record_comparison, report_tau
from agents.state import LoopState
from langgraph.graph import END
from knowledge.records import Finding


def make(lab: Lab):
    def analyze(state: LoopState) -> LoopState:
        round = state["round"]
        lab.stage(round, "analyze")
        exhausted = set(state.get("exhausted", []))
        for candidate_id in sorted(state.get("batch", [])):
            written = (lab.run_dir / "candidates" / candidate_id / "candidate.json").is_file()
            if candidate_id not in exhausted and written:     # a branch whose plan failed wrote no candidate
                analyze_one(lab, candidate_id, round)
        log_noise_floor(lab, round)
        anchors.maybe_fit(lab, round)
        report_tau(lab, round)
        if state.get("batch") and exhausted >= set(state["batch"]):
            reason = "nothing new to propose: every change to every possible parent has been tried"
            lab.events.emit("search_exhausted", round=round, reason=reason)
            return {"finished": reason}
        return {}
    return analyze


def route_after_analyze(state: LoopState) -> str:
    return END if state.get("finished") else "select"


def analyze_one(lab: Lab, candidate_id: str, round: int) -> None:
    candidate = lab.recorder.load(candidate_id)
    if candidate.status not in ("evaluated", "failed", "rejected", "screened"):
        candidate.status = "failed"     # never got past check
    parent = lab.recorder.load(candidate.parent_ids[0]) if candidate.parent_ids else None
    baselines = [c for c in lab.recorder.load_all() if c.status == "baseline"]
    if candidate.status in ("rejected", "screened"):   # a person's decision, or the cheap score's, is the analysis
        text = candidate.analysis
        findings = [Finding(id=f"{lab.run_id}-{candidate.id}-{candidate.status}", text=f"{candidate.change}: {text}",
                            kind="failure", task=candidate.task, candidate_ids=[candidate.id],
                            change=candidate.change)]
    else:
        judged_at_full = candidate.comparison is not None and candidate.comparison.get("fidelity", "full") == "full"
        if parent is not None and candidate.status == "evaluated" and not judged_at_full:
            found = scoring.verdict(candidate, parent, lab.objective,
                                    scoring.noise_floors(lab.recorder.load_all(), lab.objective))
            if found is not None:
                record_comparison(lab, candidate, parent.id, found, round)
        text, findings = lab.engine.analyze(candidate, parent, baselines)
        text = " ".join([text, *measured_verdicts(candidate, text)])
    candidate.analysis = text
    lab.recorder.save(candidate)
    lab.events.emit("analysis", round=round, candidate_id=candidate.id, status=candidate.status, text=text)
    lab.stage(round, "remember")
    for finding in findings:
        stored = lab.store.add(finding)
        lab.events.emit("finding", round=round, **stored.model_dump())


def measured_verdicts(candidate, written: str = "") -> list[str]:
    """Sentences for the verdict against the parent (as `agents.scoring.Verdict.text` wrote it; left out when the
    analyst's `written` text already gives it) and the improvement over random architectures."""
    out = []
    comparison = candidate.comparison
    if comparison and comparison.get("text"):
        if comparison["text"] not in written:
            out.append(f"Against parent {comparison['parent_id']}: {comparison['text']}.")
    elif comparison:            # a record from before verdicts carried their sentence: at full, over seeds
        out.append(f"At full fidelity over {comparison['child_seeds']} seeds, {comparison['metric']} differs from "
                   f"parent {comparison['parent_id']} by {comparison['delta']:+.4f} (95% interval "
                   f"{comparison['low']:+.4f} to {comparison['high']:+.4f}): {comparison['verdict']}.")
    over = candidate.over_random
    if over and (line := random_sentence(over)) not in written:
        out.append(line)
    return out


def random_sentence(over: dict) -> str:
    """How far above the random architectures' mean, and how many of them it is better than beyond the noise (records
    from before the noise floor: the share it is above)."""
    if "better_than" in over:
        share = f"better than {over['better_than']} of them beyond the noise"
    else:
        share = f"above {over['beats']:.0%} of them"
    return (f"Against {over['pool']} random architectures at {over['fidelity']} it is {over['delta']:+.4f} "
            f"above their mean ({over['z']:+.2f} sd; {share}).")
