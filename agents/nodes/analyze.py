"""analyze: collect the next branch to end, and let the analyst compare its candidate with its parent and
the baselines; findings are remembered.

One branch per visit: the `select` node proposes into the room it leaves. A replay collects
in the recorded order (`Lab.collect_order`), so the analyses, the findings and what later
proposals retrieve come out the same however the jobs finished. Each collection is logged as
`candidate_collected`; that order is what later proposals see (`Lab.peers`). The analysis
reads the run as it stood when the branch was proposed, plus the candidate itself.

A candidate that never passed `check` is marked failed and analysed too: a negative result
is a finding. Once `batch` branches in a row found nothing new to propose, no more are
proposed and the run ends when the rest are in.

Before the analyst writes, a candidate not judged at `full` gets its verdict against the
parent at the rung both reached (`agents.scoring.verdict`, against the run's noise floor),
logged as a `comparison` event; the analysis ends with that verdict's sentence, the one
`show` and the review page print. Once every proposal of a round is in, the round's
bookkeeping runs: a changed noise floor is logged, the suite's anchor set may be refitted,
and the cheap score's tau report is logged.
"""
from __future__ import annotations

from agents import anchors, scoring
from agents.event_types import Analysis, CandidateCollected, FindingStored, SearchExhausted
from agents.lab import Lab
from agents.nodes.baselines import log_noise_floor
from agents.nodes.evaluate import record_comparison, report_tau
from agents.scheduler import BranchPool
from agents.state import LoopState
from knowledge.records import Finding


def make(lab: Lab, branches: BranchPool):
    def analyze(state: LoopState) -> LoopState:
        in_flight = dict(state.get("in_flight", {}))
        collected = state.get("collected", 0)
        branches.ensure({cid: start_state(flight, state.get("tried", [])) for cid, flight in in_flight.items()})
        order = lab.collect_order
        # a node re-run after a crash collects again what the log says it had collected; a replay, the recorded order
        logged = [cid for cid in lab.collected() if cid in in_flight]
        expected = order[collected] if order is not None and collected < len(order) else \
            (logged[0] if logged else None)
        ended = branches.next_done(expected)
        if ended.error is not None:
            raise ended.error
        candidate_id = ended.candidate_id
        start = in_flight.pop(candidate_id)
        round = start["round"]
        lab.stage(round, "analyze")
        lab.events.emit(CandidateCollected(round=round, candidate_id=candidate_id))
        exhausted = candidate_id in ended.output.get("exhausted", [])
        written = (lab.run_dir / "candidates" / candidate_id / "candidate.json").is_file()
        if not exhausted and written:     # a branch whose plan failed wrote no candidate
            analyze_one(lab, candidate_id, round, start.get("visible"))
        update: LoopState = {"in_flight": in_flight, "collected": collected + 1,
                             "tried": ended.output.get("tried", []), "exhausted": ended.output.get("exhausted", []),
                             "idle": state.get("idle", 0) + 1 if exhausted else 0}
        batch = max(1, lab.limits.batch)
        if not any(f["round"] == round for f in in_flight.values()) and \
                (state.get("proposed", 0) >= round * batch or state.get("finished")):
            log_noise_floor(lab, round)       # the round is in: its bookkeeping, once
            anchors.maybe_fit(lab, round)
            report_tau(lab, round)
        if update["idle"] >= batch and not state.get("finished"):
            reason = "nothing new to propose: every change to every possible parent has been tried"
            lab.events.emit(SearchExhausted(round=round, reason=reason))
            update["finished"] = reason
        return update
    return analyze


def start_state(flight: dict, tried: list[str]) -> dict:
    """The state a branch starts from: its flight, with `seen` (kept in the run's state as a count, so that the
    checkpoints do not copy the growing list once per branch in flight) as the hashes tried when it was proposed."""
    seen = flight.get("seen", [])
    return {**flight, "seen": tried[:seen] if isinstance(seen, int) else seen}


def analyze_one(lab: Lab, candidate_id: str, round: int, visible: int | None = None) -> None:
    """The analyst's reading of one collected candidate, against the run as its branch saw it."""
    candidate = lab.recorder.load(candidate_id)
    if candidate.status not in ("evaluated", "failed", "rejected", "screened"):
        candidate.status = "failed"     # never got past check
    parent = lab.recorder.load(candidate.parent_ids[0]) if candidate.parent_ids else None
    peers = lab.peers(visible, candidate.id)
    baselines = [c for c in peers if c.status == "baseline"]
    if candidate.status in ("rejected", "screened"):   # a person's decision, or the cheap score's, is the analysis
        text = candidate.analysis
        findings = [Finding(id=f"{lab.run_id}-{candidate.id}-{candidate.status}", text=f"{candidate.change}: {text}",
                            kind="failure", task=candidate.task, candidate_ids=[candidate.id],
                            change=candidate.change)]
    else:
        judged_at_full = candidate.comparison is not None and candidate.comparison.get("fidelity", "full") == "full"
        if parent is not None and candidate.status == "evaluated" and not judged_at_full:
            found = scoring.verdict(candidate, parent, lab.objective, scoring.noise_floors(peers, lab.objective))
            if found is not None:
                record_comparison(lab, candidate, parent.id, found, round)
        text, findings = lab.engine.analyze(candidate, parent, baselines)
        text = " ".join([text, *measured_verdicts(candidate, text)])
    candidate.analysis = text
    lab.recorder.save(candidate)
    lab.events.emit(Analysis(round=round, candidate_id=candidate.id, status=candidate.status, text=text))
    lab.stage(round, "remember")
    for finding in findings:
        stored = lab.store.add(finding)
        lab.events.emit(FindingStored(round=round, **stored.model_dump()))


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
