"""Replay: re-drive a recorded run from its log and check that every decision comes out the same.

The replay runs the real graph in a fresh directory (`<run>/replays/<n>/`) with the `replay`
engine and evaluator, answering reviews with the recorded decisions, then compares the
decision events of both logs: parents chosen, plans, findings retrieved, job outcomes,
promotions, reviews. Which event types are decisions, and which of their fields, is said by
their payload models (`decides` in `agents.event_types`), not listed here. `reexecute`
instead re-runs every recorded evaluation in a sandbox and reports how each metric moved.
"""
from __future__ import annotations

import json
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from agents.event_types import decision_fields
from agents.events import Event, read_events
from agents.replay import ReplayDivergence, ReplayEngine, ReplayEvaluator
from archlab.settings import recorded_settings as recorded

@dataclass
class ReplayReport:
    replay_dir: Path
    compared: int
    divergence: str            # "" when every decision matched

    @property
    def ok(self) -> bool:
        return not self.divergence


def decisions(events: list[Event]) -> list[tuple]:
    """The run's decisions: for each event type whose model names `decides` fields
    (`agents.event_types`), the type and those fields' values.

    The branches of a round run concurrently, so decisions of different candidates interleave
    in the log however the jobs finished: each candidate's decisions (those whose model has
    the `branch_field`, `candidate_id`) are kept in log order and compared candidate by
    candidate, and a decision that names a job (`job_id`) job by job, since one candidate's
    jobs may run at once too (a baseline's noise seeds); the run's own decisions (no
    candidate) come first, in log order.
    A node re-run after a crash logs its decisions again; every decision names its round,
    job or candidate, so an exact repeat is that re-run, not a new decision, and is dropped.
    """
    streams: dict[str, list[tuple[str, tuple]]] = defaultdict(list)
    seen = set()
    for e in events:
        fields = decision_fields(e.type)
        if fields:
            data = e.data
            values = data.model_dump(include=set(fields))
            decision = (e.type, *(json.dumps(values[f], sort_keys=True) for f in fields))
            if decision not in seen:
                seen.add(decision)
                job = getattr(data, "job_id", None) or ""
                streams[str(getattr(data, data.branch_field, "") or "")].append((job, decision))
    return [decision for branch in sorted(streams) for decision in _jobs_in_canonical_order(streams[branch])]


def _jobs_in_canonical_order(stream: list[tuple[str, tuple]]) -> list[tuple]:
    """One candidate's decisions in log order, except that a run of job decisions between two
    of the candidate's own decisions is ordered job by job: those jobs ran at once."""
    out: list[tuple] = []
    pending: list[tuple[str, tuple]] = []
    for job, decision in [*stream, ("", None)]:
        if job:
            pending.append((job, decision))
            continue
        out.extend(d for _, d in sorted(pending, key=lambda jd: jd[0]))    # stable: a job keeps its own order
        pending = []
        if decision is not None:
            out.append(decision)
    return out


def first_divergence(recorded: list[tuple], replayed: list[tuple]) -> str:
    for i, (a, b) in enumerate(zip(recorded, replayed)):
        if a != b:
            return f"decision {i}: the log has {_show(a)}, the replay made {_show(b)}"
    if len(recorded) != len(replayed):
        longer, what = (recorded, "the log") if len(recorded) > len(replayed) else (replayed, "the replay")
        return f"decision {min(len(recorded), len(replayed))}: only {what} has {_show(longer[min(len(recorded), len(replayed))])}"
    return ""


def _show(decision: tuple) -> str:
    kind, *values = decision
    fields = decision_fields(kind)
    return f"{kind}(" + ", ".join(f"{f}={v}" for f, v in zip(fields, values)) + ")"


def collect_order(events: list[Event]) -> list[str]:
    """The order in which the recorded run collected its branches (a re-run node's repeat counted once)."""
    order: list[str] = []
    for e in events:
        if e.type == "candidate_collected" and e.data.round > 0 and e.data.candidate_id not in order:
            order.append(e.data.candidate_id)
    return order


def replay(run_dir: Path) -> ReplayReport:
    from archlab.session import drive, open_lab
    record = json.loads((run_dir / "run.json").read_text())
    events, _ = read_events(run_dir / "events.jsonl")
    recorded_settings = record["settings"]
    # the replay's own store, executor and checkpoints: never the run's Chroma server, Ray cluster or Postgres thread
    overrides = {"knowledge": {**recorded_settings.get("knowledge", {}), "path": None, "url": None},
                 "executor": {**recorded_settings.get("executor", {}), "backend": "local", "address": None,
                              "resources": {}}}
    if "noise_seeds" not in recorded_settings.get("loop", {}):     # recorded before the noise floor was measured
        overrides["loop"] = {**recorded_settings.get("loop", {}), "noise_seeds": 1}
    batches = [e.data.batch or len(e.data.candidate_ids) for e in events if e.type == "parents_selected"]
    if batches:     # the batch the run had (its setting may say "one per worker", and this machine may have others)
        overrides["loop"] = {**overrides.get("loop", recorded_settings.get("loop", {})), "batch": max(batches)}
    settings = recorded({**recorded_settings, **overrides})
    replays = run_dir / "replays"
    replays.mkdir(exist_ok=True)
    replay_dir = replays / str(len(list(replays.iterdir())) + 1)
    replay_dir.mkdir()
    recorded_reviews = {(e.data.candidate_id, e.data.fidelity): e.data for e in events if e.type == "review_decision"}

    def decide(request: dict) -> dict:
        key = (request["candidate_id"], request["fidelity"])
        if key not in recorded_reviews:
            raise ReplayDivergence(f"the replay asked for a review of {key[0]} before {key[1]}, which the log never did")
        recorded = recorded_reviews[key]
        if recorded.edited_code or recorded.edited_plan:
            path = run_dir / "reviews" / f"{key[0]}-{key[1]}.json"
            if path.is_file():
                return json.loads(path.read_text())
        return {"action": recorded.action, "note": recorded.note}

    evaluator = ReplayEvaluator(events)
    divergence = ""
    with open_lab(settings, record["run_id"], replay_dir, engine=ReplayEngine(events, settings.llm), sandbox=evaluator,
                  evaluator=evaluator) as lab:
        lab.collect_order = collect_order(events)
        try:
            drive(lab, decisions=decide, poll_seconds=0.01)
        except ReplayDivergence as exc:
            divergence = str(exc)
        replayed = list(lab.events.history)
    recorded_decisions, replayed_decisions = decisions(events), decisions(replayed)
    found = first_divergence(recorded_decisions, replayed_decisions)
    return ReplayReport(replay_dir=replay_dir, compared=min(len(recorded_decisions), len(replayed_decisions)),
                        divergence=found or divergence)


@dataclass
class MetricDrift:
    job_id: str
    metric: str
    recorded: float
    reexecuted: float


def reexecute(run_dir: Path, sandbox) -> tuple[list[MetricDrift], list[str]]:
    """Re-run every recorded evaluation; returns metric drifts and jobs whose status changed."""
    from evaluators.harness import evaluate
    from agents.anchors import subset_of
    from wire.jobs import EvalJob
    events, _ = read_events(run_dir / "events.jsonl")
    started = {e.data.job_id: e.data for e in events if e.type == "job_started"}
    anchor_sets = {e.data.id: subset_of(e.data) for e in events if e.type == "suite_anchors"}
    drifts, changed = [], []
    spec = next(e.data.spec for e in events if e.type in ("run_started", "run_resumed"))
    default_seed = json.loads((run_dir / "run.json").read_text())["settings"]["seed"]
    for e in events:
        if e.type != "result" or e.data.result is None or e.data.job_id not in started:
            continue
        logged, recorded = e.data, e.data.result
        job_started = started[logged.job_id]
        source = _source_for(run_dir, events, logged.candidate_id, job_started.source_hash)
        job = EvalJob(job_id=logged.job_id, candidate_id=logged.candidate_id, source=source, task=spec,
                      fidelity=logged.fidelity, seed=default_seed if job_started.seed is None else job_started.seed,
                      items=anchor_sets.get(job_started.items) if job_started.items else None)
        with tempfile.TemporaryDirectory(prefix="archlab-reexec-") as tmp:
            again = evaluate(sandbox, job, Path(tmp))
        if again.status != recorded.status:
            changed.append(f"{logged.job_id}: {recorded.status} -> {again.status}")
        for metric, value in recorded.metrics.items():
            if metric in again.metrics and not metric.endswith("seconds"):
                drifts.append(MetricDrift(logged.job_id, metric, value, again.metrics[metric]))
    return drifts, changed


def _source_for(run_dir: Path, events: list[Event], candidate_id: str, source_hash: str) -> str:
    from agents.records import source_hash as hash_of
    for e in events:
        if e.type in ("code", "fix") and e.data.candidate_id == candidate_id and e.data.source \
                and hash_of(e.data.source) == source_hash:
            return e.data.source
    path = run_dir / "candidates" / candidate_id / "candidate.py"
    return path.read_text()


EXPORTED = ("run.json", "events.jsonl", "candidates/*/candidate.py", "candidates/*/candidate.json",
            "candidates/*/result.json", "reviews/*.json")


def export(run_dir: Path, archive: Path) -> Path:
    """One .tar.gz holding what another machine needs to show and replay the run."""
    with tarfile.open(archive, "w:gz") as tar:
        for pattern in EXPORTED:
            for path in sorted(run_dir.glob(pattern)):
                tar.add(path, arcname=f"{run_dir.name}/{path.relative_to(run_dir)}")
    return archive


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return next(p for p in into.iterdir() if (p / "run.json").is_file())
