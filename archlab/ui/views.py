"""What each page shows, worked out from a `RunRecord` (`archlab.runstore.load_run`): plain values for the templates.

Every ranking goes through `agents.scoring` (score, ranked, standing) and the front through
`agents.objective.front`, both under the run's own objective: no metric is named here, the
objective's metric and cost axes are read from the run. Every claim that one candidate is
better than another is `agents.scoring.verdict` against the run's noise floor
(`scoring.noise_floors`), shown with its interval; the best is shown with its lead or as tied. Nothing here reads a file: the run
store does that, and the templates escape whatever text a run holds. Events are read as their payload models
(`event.data`, `agents.event_types`), never as dicts.

What it does not do: HTTP, security, or drawing (`archlab.ui.app`, `archlab.ui.plots`).
"""
from __future__ import annotations

import difflib
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agents import event_types as ev
from agents import scoring
from agents.event_types import decision_fields
from agents.objective import front as pareto_front
from agents.records import Candidate
from archlab.runstore import RunRecord
from archlab.ui import plots
from wire.task import FIDELITY_ORDER as ORDER

FIDELITY_ORDER = ORDER
JOB_ENDS = (ev.JobResult, ev.SandboxError, ev.JobReused)     # a job_started is answered by one of these


def llm_cost(run: RunRecord) -> float:
    from agents.llm.usage import usage_by_role
    return sum(row["cost_usd"] for row in usage_by_role(run.events).values())


def rounds(run: RunRecord) -> tuple[int, int | None]:
    """(rounds started, rounds the run was asked for)."""
    started = max((e.data.round for e in run.events if isinstance(e.data, ev.RoundStarted)), default=0)
    total = run.settings.get("rounds")
    return started, total if isinstance(total, int) else None


def overview(run: RunRecord) -> dict:
    """One row of the runs page: the best and whether its lead is beyond the noise (`scoring.standing`)."""
    done, total = rounds(run)
    objective = run.objective
    floors = scoring.noise_floors(run.candidates, objective) if objective is not None else {}
    standing = scoring.standing(run.candidates, objective, floors=floors) if objective is not None else None
    scored = len(scoring.ranked(run.candidates, objective)) if objective is not None else 0
    return {"id": run.run_id, "task": run.settings.get("task", "?"), "state": run.state, "driven": run.driven,
            "rounds": f"{done}/{total}" if total is not None else str(done), "candidates": len(run.candidates),
            "scored": scored, "best": standing.best if standing else None, "standing": standing,
            "floors": list(floors.values()), "metric": objective.metric if objective else "",
            "cost": llm_cost(run), "waiting": len(run.waiting), "started": run.record.get("started", "")}


def overview_json(row: dict) -> dict:
    """An `overview` row as plain JSON: the best with its lead's verdict and who it is tied with, the floors."""
    standing = row.get("standing")
    best = None
    if standing is not None:
        runner = standing.runner_up
        best = {"id": standing.best.candidate.id, "value": standing.best.value, "fidelity": standing.best.fidelity,
                "origin": standing.best.origin, "tied": [s.candidate.id for s, _ in standing.tied],
                "lead": None if runner is None else {"over": runner[0].candidate.id, **runner[1].as_dict()},
                "standing": standing.text()}
    return {**{k: v for k, v in row.items() if k not in ("best", "standing", "floors")}, "best": best,
            "floors": [f.as_event() for f in row.get("floors", [])]}


def versus_parent(run: RunRecord, candidate: Candidate) -> scoring.Verdict | None:
    """The candidate's verdict against its first parent (`scoring.verdict`, with the run's noise floors)."""
    by_id = {c.id: c for c in run.candidates}
    parent = by_id.get(candidate.parent_ids[0]) if candidate.parent_ids else None
    if run.objective is None or parent is None:
        return None
    return scoring.verdict(candidate, parent, run.objective, scoring.noise_floors(run.candidates, run.objective))


# --- over time ---------------------------------------------------------------------------------------------
def best_over_time(run: RunRecord) -> list[tuple[float, scoring.Score]]:
    """(seconds since the run's first event, the run's best) each time the best changed.

    The best changes only on a lead beyond the noise (`scoring.takes_lead`: beyond the run's
    noise floor, or the interval over seeds; a higher rung takes it as the ranking says); a
    new top inside the noise leaves the incumbent in place. A candidate's evaluation at a
    fidelity counts from its last result event at that fidelity (a `full` evaluation is the
    mean over its seeds, complete with the last seed)."""
    if run.objective is None or not run.events:
        return []
    floors = scoring.noise_floors(run.candidates, run.objective)
    by_id = {c.id: c for c in run.candidates}
    last: dict[tuple[str, str], int] = {}
    for i, e in enumerate(run.events):
        if isinstance(e.data, ev.JobResult):
            last[(e.data.candidate_id, e.data.fidelity)] = i
    start = run.events[0].time
    known: dict[str, Candidate] = {}
    out: list[tuple[float, scoring.Score]] = []
    for i, e in enumerate(run.events):
        if not isinstance(e.data, ev.JobResult):
            continue
        key = (e.data.candidate_id, e.data.fidelity)
        final = by_id.get(key[0])
        if last.get(key) != i or final is None or key[1] not in final.evaluations:
            continue
        seen = known.get(final.id)
        evaluations = dict(seen.evaluations) if seen else {}
        evaluations[key[1]] = final.evaluations[key[1]]
        known[final.id] = final.model_copy(update={"evaluations": evaluations})
        top = scoring.best(known.values(), run.objective)
        if top is None:
            continue
        incumbent = scoring.score(known[out[-1][1].candidate.id], run.objective) if out else None
        best = top if incumbent is None or scoring.takes_lead(top, incumbent, run.objective, floors) else incumbent
        if not out or (best.candidate.id, best.fidelity, best.value) != (
                out[-1][1].candidate.id, out[-1][1].fidelity, out[-1][1].value):
            out.append((e.time - start, best))
    return out


def best_plot(run: RunRecord):
    metric = run.objective.metric if run.objective else "quality"
    points = [(seconds / 60, s.value, f"{s.candidate.id} ({s.origin}): {metric} {s.value:.4g} at {s.fidelity}")
              for seconds, s in best_over_time(run)]
    return plots.line_chart("best", [plots.Series("best so far", points, step=True)], "minutes since start",
                            metric, "no candidate scored yet")


def compare_plot(runs: list[RunRecord]):
    series = []
    for run in runs:
        points = [(seconds / 60, s.value, f"{run.run_id}: {s.candidate.id} {s.value:.4g} at {s.fidelity}")
                  for seconds, s in best_over_time(run)]
        metric = run.objective.metric if run.objective else "?"
        series.append(plots.Series(f"{run.run_id} ({metric})", points, step=True))
    metrics = sorted({r.objective.metric for r in runs if r.objective})
    return plots.line_chart("compare", series, "minutes since start", " / ".join(metrics) or "quality",
                            "none of these runs has a scored candidate yet")


def suite_report(run: RunRecord):
    """The downstream suite: per-scenario scores per candidate and the anchor set in use (`agents.anchors.report`), or
    None for a task without a suite."""
    from agents import anchors
    return anchors.report(run.candidates, run.events)


def tau_plot(run: RunRecord):
    """The cheap score's Kendall tau against training, each time it was measured."""
    reports = [e.data for e in run.events if isinstance(e.data, ev.CheapScoreReport) and e.data.tau is not None]
    fitted = [(float(i), p.tau, f"round {p.round}: tau {p.tau:+.2f} vs {p.target} ({p.n} candidates)")
              for i, p in enumerate(reports, 1) if p.tau is not None]
    loo = [(float(i), p.tau_loo, f"round {p.round}: leave-one-out tau {p.tau_loo:+.2f}")
           for i, p in enumerate(reports, 1) if p.tau_loo is not None]
    return plots.line_chart("tau", [plots.Series("in-sample", fitted), plots.Series("leave-one-out", loo, dashed=True)],
                            "cheap-score report", "Kendall tau", "no cheap-score report yet")


# --- the front and the family tree -------------------------------------------------------------------------
def pareto_plot(run: RunRecord):
    objective = run.objective
    if objective is None or not objective.costs:
        return plots.scatter("pareto", [], [], "", "", "no objective yet")
    cost = objective.costs[0]
    points, front = [], []
    on_front = {p["id"] for p in pareto_front(run.candidates, objective)}
    for s in scoring.ranked(run.candidates, objective):
        merged = _cost(s.candidate, cost)
        if merged is None:
            continue
        points.append((merged, s.value, f"{s.candidate.id}: {objective.metric} {s.value:.4g}, {cost} {merged:,.0f}"
                       + (" (on the front)" if s.candidate.id in on_front else ""), s.candidate.status))
        if s.candidate.id in on_front:
            front.append((merged, s.value))
    return plots.scatter("pareto", points, front, f"{cost} (lower is better)", objective.metric,
                         "no candidate has both a score and a cost yet")


def _cost(candidate: Candidate, name: str) -> float | None:
    from agents.objective import merged_metrics
    value = merged_metrics(candidate).get(name)
    return float(value) if value is not None else None


def lineage_plot(run: RunRecord, href: str):
    """`href` is the candidate page's URL with `{id}` for the candidate."""
    by_id = {c.id: c for c in run.candidates}
    depth: dict[str, int] = {}

    def depth_of(cid: str, seen: frozenset = frozenset()) -> int:
        if cid in depth:
            return depth[cid]
        parents = [p for p in by_id[cid].parent_ids if p in by_id and p not in seen]
        depth[cid] = 1 + max((depth_of(p, seen | {cid}) for p in parents), default=-1)
        return depth[cid]

    nodes = []
    for c in sorted(run.candidates, key=lambda c: (c.status not in ("baseline", "reference"), c.id)):
        s = scoring.score(c, run.objective) if run.objective else None
        shown = f"{s.value:.4g} at {s.fidelity}" if s else "no score"
        marker = {"baseline": "square", "reference": "diamond"}.get(c.status, "circle")
        nodes.append(plots.Node(c.id, depth_of(c.id), c.status, f"{c.id} [{scoring.origin(c)}, {c.status}]: "
                                f"{c.title} - {shown}", href.replace("{id}", c.id), c.parent_ids, marker))
    return plots.tree("lineage", nodes, "no candidates yet")


# --- tables ------------------------------------------------------------------------------------------------
SORTS = ("rank", "id", "parent", "status", "value", "fidelity", "cost")


def candidate_rows(run: RunRecord, sort: str = "rank", descending: bool = False) -> list[dict]:
    """The candidate table: scored best first (`scoring.ranked`), then the rest in id order, unless sorted."""
    objective = run.objective
    ranked = scoring.ranked(run.candidates, objective) if objective else []
    position = {s.candidate.id: i for i, s in enumerate(ranked, 1)}
    scores = {s.candidate.id: s for s in ranked}
    cost = objective.costs[0] if objective and objective.costs else None
    floors = scoring.noise_floors(run.candidates, objective) if objective else {}
    by_id = {c.id: c for c in run.candidates}
    rows = []
    for c in run.candidates:
        s = scores.get(c.id)
        parent = by_id.get(c.parent_ids[0]) if c.parent_ids else None
        versus = scoring.verdict(c, parent, objective, floors) if objective and parent else None
        rows.append({"id": c.id, "parent": ", ".join(c.parent_ids), "title": c.title, "status": c.status,
                     "origin": scoring.origin(c), "rank": position.get(c.id), "score": s,
                     "value": s.value if s else None, "fidelity": s.fidelity if s else "",
                     "feasible": s.feasible if s else None, "cost": _cost(c, cost) if cost else None,
                     "versus": versus})
    keys = {"rank": lambda r: (r["rank"] is None, r["rank"] or 0, r["id"]),
            "id": lambda r: r["id"], "parent": lambda r: (r["parent"], r["id"]), "status": lambda r: (r["status"], r["id"]),
            "value": lambda r: (r["score"] is None, r["score"].quality if r["score"] else 0.0, r["id"]),
            "fidelity": lambda r: (r["fidelity"], r["id"]),
            "cost": lambda r: (r["cost"] is None, r["cost"] or 0.0, r["id"])}
    rows.sort(key=keys.get(sort, keys["rank"]))
    if descending:
        scored = [r for r in rows if (r["rank"] if sort == "rank" else r.get(sort)) is not None]
        rows = scored[::-1] + [r for r in rows if r not in scored]
    return rows


@dataclass
class Job:
    job_id: str
    candidate_id: str
    fidelity: str
    seconds: float            # since it started (in flight) or how long it took
    status: str = ""          # the result's status; "" while in flight


def jobs(run: RunRecord, now: float, recent: int = 8) -> tuple[list[Job], list[Job]]:
    """(jobs started and not yet answered, the latest finished ones, newest first)."""
    started: dict[str, tuple[float, ev.JobStarted]] = {}     # job id -> (when, what)
    finished: list[Job] = []
    for e in run.events:
        data = e.data
        if isinstance(data, ev.JobStarted):
            started[data.job_id] = (e.time, data)
        elif isinstance(data, JOB_ENDS) and data.job_id in started:
            at, begin = started.pop(data.job_id)
            finished.append(Job(data.job_id, begin.candidate_id, begin.fidelity, e.time - at,
                                data.status if isinstance(data, ev.JobResult) else e.type))
    flight = [Job(job.job_id, job.candidate_id, job.fidelity, now - at) for at, job in started.values()]
    return flight, finished[::-1][:recent]


# --- one candidate -----------------------------------------------------------------------------------------
def diff(parent: Candidate | None, candidate: Candidate) -> list[tuple[str, str]]:
    """The unified diff of the candidate's module against its first parent's, as (kind, line)."""
    if parent is None:
        return []
    lines = difflib.unified_diff(parent.source.splitlines(), candidate.source.splitlines(),
                                 fromfile=f"{parent.id}/candidate.py", tofile=f"{candidate.id}/candidate.py", lineterm="")
    kinds = []
    for line in lines:
        kind = ("file" if line.startswith(("---", "+++")) else "hunk" if line.startswith("@@")
                else "add" if line.startswith("+") else "del" if line.startswith("-") else "same")
        kinds.append((kind, line))
    return kinds


@dataclass
class Evaluation:
    fidelity: str
    status: str
    metrics: list[tuple[str, float]]
    message: str
    log_tail: str
    interval: tuple[float, float] | None          # the 95% interval of the objective's metric over seeds
    seeds: list[tuple[int, float | None]] = field(default_factory=list)


def evaluations(candidate: Candidate, metric: str | None) -> list[Evaluation]:
    out = []
    for fidelity in sorted(candidate.evaluations, key=lambda f: FIDELITY_ORDER.index(f) if f in FIDELITY_ORDER else 99):
        result = candidate.evaluations[fidelity]
        low = result.metrics.get(f"{metric}_ci_low") if metric else None
        high = result.metrics.get(f"{metric}_ci_high") if metric else None
        seeds = [(i, r.metrics.get(metric) if metric else None) for i, r in enumerate(candidate.seeds.get(fidelity, []))]
        out.append(Evaluation(fidelity, result.status, sorted(result.metrics.items()), result.message, result.log_tail,
                              (low, high) if low is not None and high is not None else None, seeds))
    return out


def curve_plot(candidate: Candidate):
    """The training loss over the run of each training job (each seed at `full`)."""
    series = []
    for fidelity in ("short", "full"):
        runs = candidate.seeds.get(fidelity) or ([candidate.evaluations[fidelity]] if fidelity in candidate.evaluations
                                                 else [])
        for i, result in enumerate(runs):
            curve = [v for v in result.curve if isinstance(v, (int, float))]
            if len(curve) < 2:
                continue
            name = f"{fidelity}" + (f" seed {i}" if len(runs) > 1 else "")
            points = [(100 * j / (len(curve) - 1), float(v), f"{name}: loss {v:.4g}") for j, v in enumerate(curve)]
            series.append(plots.Series(name, points, colour=plots.PALETTE[len(series) % len(plots.PALETTE)]))
    return plots.line_chart("curve", series, "training progress (%)", "training loss", "no learning curve recorded")


@dataclass
class Drawn:
    """A finding a plan was grounded on, as the candidate page lists it."""
    id: str
    text: str
    distance: float | None      # from the plan's query; None when the log has no retrieval for it


def drew_on(run: RunRecord, candidate_id: str) -> tuple[list[Drawn], list[dict]]:
    """(the findings retrieved for the candidate's plan, with distance; the literature principles shown that round)."""
    findings = {e.data.id: e.data for e in run.events if isinstance(e.data, ev.FindingStored)}
    retrieval = next((e.data for e in run.events if isinstance(e.data, ev.Retrieval)
                      and e.data.candidate_id == candidate_id), None)
    plan = next((e.data for e in run.events if isinstance(e.data, ev.PlanMade) and e.data.candidate_id == candidate_id),
                None)
    ids = list(retrieval.finding_ids) if retrieval else list(plan.retrieved) if plan else []
    distances = list(retrieval.distances) if retrieval else []
    used = [Drawn(fid, found.text if (found := findings.get(fid)) else "(not in this run's log)",
                  distances[i] if i < len(distances) else None) for i, fid in enumerate(ids)]
    shown = next((e.data for e in run.events if isinstance(e.data, ev.PrinciplesRetrieved)
                  and e.data.round == plan.round), None) if plan is not None else None
    principles = []
    if shown and shown.ids:
        entries = {p.id: p for p in _literature()}
        principles = [entries[i].model_dump() if i in entries else {"id": i, "title": "", "principle": ""}
                      for i in shown.ids]
    return used, principles


def _literature():
    from knowledge.literature import load_entries
    return load_entries()


def twins(run: RunRecord, candidate: Candidate) -> list[dict]:
    """Candidates with the same functional hash (the same outputs on the fixed inputs), and the cache hits."""
    out = [{"id": c.id, "how": "same functional hash", "fidelity": ""} for c in run.candidates
           if candidate.functional_hash and c.id != candidate.id and c.functional_hash == candidate.functional_hash]
    for e in run.events:
        hit = e.data
        if isinstance(hit, ev.CacheHit) and candidate.id in (hit.candidate_id, hit.twin_id):
            other = hit.twin_id if hit.candidate_id == candidate.id else hit.candidate_id
            out.append({"id": other, "how": "result reused", "fidelity": hit.fidelity})
    return out


# --- review, replay ----------------------------------------------------------------------------------------
def review_items(run: RunRecord) -> list[dict]:
    by_id = {c.id: c for c in run.candidates}
    items = []
    for request in run.waiting:
        candidate = by_id.get(request.candidate_id)
        parent = by_id.get(request.parent_id)
        items.append({"request": request, "plan": request.plan or {}, "candidate": candidate,
                      "parent": parent, "diff": diff(parent, candidate) if candidate else [],
                      "decision": run.decided.get(request.candidate_id)})
    return items


def decisions_made(run: RunRecord, limit: int = 10) -> list[ev.ReviewDecision]:
    """The latest review decisions the run took up, newest first."""
    return [e.data for e in run.events if isinstance(e.data, ev.ReviewDecision)][::-1][:limit]


def replay_rows(run: RunRecord, step: int, window: int = 12) -> tuple[int, list[dict]]:
    """The step shown (clamped to the log) and the events around it, each with the decision it records."""
    if not run.events:
        return 0, []
    step = min(max(0, step), len(run.events) - 1)
    low, high = max(0, step - window), min(len(run.events), step + window + 1)
    rows = []
    for i in range(low, high):
        e = run.events[i]
        fields = decision_fields(e.type)
        rows.append({"index": i, "event": e, "decision": {f: getattr(e.data, f) for f in fields},
                     "offset": e.time - run.events[0].time})
    return step, rows


def decision_steps(run: RunRecord) -> list[int]:
    return [i for i, e in enumerate(run.events) if decision_fields(e.type)]


# --- knowledge ---------------------------------------------------------------------------------------------
class KnowledgeIndex:
    """Semantic search over a run's findings (as its log recorded them) and the literature principles.

    Each run gets a private scratch store with the run's own embedder, filled from the log: the
    run's own store is never opened for writing, a shared store's other runs are left out, and an
    exported run without its store searches the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scratch = tempfile.TemporaryDirectory(prefix="archlab-ui-knowledge-")
        self._stores: dict[str, tuple[int, object, object]] = {}

    def findings(self, run: RunRecord) -> list:
        from knowledge.records import Finding
        fields = set(Finding.model_fields)          # the stored record, less the round it was learned in
        return [Finding.model_validate(e.data.model_dump(include=fields))
                for e in run.events if isinstance(e.data, ev.FindingStored)]

    def search(self, run: RunRecord, query: str, k: int = 8) -> tuple[list, list]:
        """(findings nearest to `query`, with distance; principles nearest to it, with distance)."""
        from knowledge.embedders import make_embedder
        from knowledge.literature import Literature
        from knowledge.store import KnowledgeStore
        findings = self.findings(run)
        key = str(run.path)
        with self._lock:
            held = self._stores.get(key)
            if held is None or held[0] != len(findings):
                kind = (run.settings.get("knowledge") or {}).get("embedder", "auto")
                path = Path(self._scratch.name) / f"{len(self._stores)}-{run.run_id}-{len(findings)}"
                store = KnowledgeStore(path, make_embedder(kind))
                for finding in findings:
                    store.add(finding)
                held = (len(findings), store, Literature(store))
                self._stores[key] = held
            _, store, literature = held
            return store.nearest(query, k=k), literature.nearest(query, k=min(k, 6))

    def close(self) -> None:
        self._scratch.cleanup()

