"""evaluate: climb the candidate's pending rung (proxy -> short -> full) in the sandbox; the host scores it.

Successive halving, online (`agents.screening`): after `proxy`, the candidate trains at
`short` only while the run's re-fitted cheap score ranks it in the top `keep_proxy` of every
candidate that reached `proxy`; otherwise it is `screened`. Until the score can be fitted
(fewer than 5 trained candidates: a cold start) nobody is screened on prior weights alone.
After `short`, it trains at `full` when it ranks in the top `promote_fraction` of the short
rung (0: nobody does). The parent's own `full` runs are not gated by review. `full` runs
`full_seeds` seeds and is reported as a mean with a confidence interval (`agents.seeds`);
the parent is trained at `full` too when it has not been, so "better than the parent" is
decided beyond the interval (`agents.scoring.verdict`, logged as a `comparison` event). After
every training result fitness and the Pareto front are brought up to date
(`agents.objective`); the cheap score's Kendall tau against the expensive quality is logged
once a round, by the analyze node (`report_tau`: its leave-one-out refits grow with the run,
and nothing decides on it).

A candidate whose function was already trained (same functional hash) reuses that result,
logged as a `cache_hit`, instead of training again.

Branches are evaluated at the same time; each is ranked, and looks for a twin, among the run
as it stood when it was proposed plus itself (`Lab.peers`) — never among branches still in
flight — so a decision does not depend on which other job finished first.
"""
from __future__ import annotations

from agents import anchors, objective, scoring, screening, seeds
from agents.event_types import CacheHit, CheapScoreReport, Comparison, ParetoFront, Promotion
from agents.lab import Lab
from agents.nodes.review import gate
from agents.records import Candidate
from agents.state import CandidateState
from wire.jobs import EvalResult


def make(lab: Lab):
    def evaluate(state: CandidateState) -> CandidateState:
        round = state["round"]
        fidelity = state.get("pending") or "short"
        lab.stage(round, f"evaluate ({fidelity})")
        candidate = lab.recorder.load(state["candidate_id"])
        visible = state.get("visible")
        peers = lambda: lab.peers(visible, candidate.id)  # noqa: E731
        result = reuse_twin(lab, candidate, fidelity, round, peers())
        if result is None:
            result = train_seeds(lab, candidate, fidelity) if fidelity == "full" else lab.run_job(candidate, fidelity)
            if fidelity == "short":      # a verdict the anchor set cannot make reliably: the whole suite
                parent = lab.recorder.load(candidate.parent_ids[0]) if candidate.parent_ids else None
                result = anchors.escalate(lab, candidate, parent, result, round)
        candidate.evaluations[fidelity] = result
        if fidelity == "short":
            candidate.status = "evaluated" if result.ok else "failed"
        if fidelity == "short" and result.ok and objective.needs_bench(lab.objective):
            candidate.evaluations["bench"] = lab.run_job(candidate, "bench")   # the objective limits latency/memory
        if fidelity == "full" and result.ok:
            judge_against_parent(lab, candidate, round, visible)
        settle(lab, candidate, round)
        pending = None
        if fidelity == "proxy":
            pending = after_proxy(lab, candidate, result, round, peers())
        elif fidelity == "short" and result.ok and lab.limits.loop.promote_fraction > 0:
            decision = screening.rung_decision(peers(), candidate.id, "short",
                                               lab.limits.loop.promote_fraction, lab.spec, lab.objective.metric,
                                               lab.objective.higher_is_better)
            lab.events.emit(Promotion(round=round, **decision.as_event(candidate.id)))
            pending = "full" if decision.promoted else None
        return {"pending": pending}
    return evaluate


def after_proxy(lab: Lab, candidate: Candidate, result: EvalResult, round: int,
                peers: list[Candidate]) -> str | None:
    """Where a candidate goes after its proxy job: `short`, or nowhere (screened)."""
    if not result.ok:       # the proxies themselves failed on it (a check passed): do not judge it by them
        lab.events.emit(Promotion(round=round, candidate_id=candidate.id, rung="proxy", to="short", promoted=True,
                                  reason=f"proxies unavailable ({result.status}); trained without screening"))
        return "short"
    decision = screening.rung_decision(peers, candidate.id, "proxy", lab.limits.keep_proxy,
                                       lab.spec, lab.objective.metric, lab.objective.higher_is_better)
    event = decision.as_event(candidate.id)
    if decision.target == "prior":          # the score has not been fitted on this run yet: screen nobody on priors
        event.update(promoted=True, reason="cold start: fewer than 5 trained candidates to fit the cheap score")
    lab.events.emit(Promotion(round=round, **event))
    if event["promoted"]:
        return "short"
    candidate.status = "screened"
    candidate.analysis = (f"Screened out before training: the cheap score ranked it {decision.rank} of "
                          f"{decision.pool} at the proxy rung, and only the top {decision.keep} go on.")
    lab.recorder.save(candidate)
    return None


def train_seeds(lab: Lab, candidate: Candidate, fidelity: str) -> EvalResult:
    """`full_seeds` runs from seeds lab.seed, lab.seed + 1, ...; stops at the first failure."""
    results = []
    for k in range(lab.limits.loop.full_seeds):
        results.append(lab.run_job(candidate, fidelity, seed_index=k))
        if not results[-1].ok:
            break
    candidate.seeds[fidelity] = results
    return seeds.aggregate(results, lab.objective.metric)


def judge_against_parent(lab: Lab, candidate: Candidate, round: int, visible: int | None = None) -> None:
    """Better than the parent beyond the interval over seeds (`agents.scoring.verdict`), at `full`."""
    parent = lab.recorder.load(candidate.parent_ids[0]) if candidate.parent_ids else None
    if parent is not None and parent.evaluations.get("full") is None:
        lab.stage(round, f"evaluate parent {parent.id} (full)")
        parent.evaluations["full"] = train_seeds(lab, parent, "full")
        settle(lab, parent, round)
    if parent is not None and parent.evaluations["full"].ok:
        found = scoring.verdict(candidate, parent, lab.objective,
                                scoring.noise_floors(lab.peers(visible, candidate.id, parent.id), lab.objective))
        if found is not None and found.fidelity == "full":
            record_comparison(lab, candidate, parent.id, found, round)
    lab.recorder.save(candidate)


def record_comparison(lab: Lab, candidate: Candidate, parent_id: str, found: scoring.Verdict, round: int) -> None:
    """Keep the verdict against the parent on the candidate and log it as a `comparison` event."""
    candidate.comparison = {"parent_id": parent_id, **found.as_dict()}
    lab.events.emit(Comparison(round=round, candidate_id=candidate.id, **candidate.comparison))


def settle(lab: Lab, candidate: Candidate, round: int) -> None:
    """Fitness, improvement over random, the Pareto front: brought up to date after a new result."""
    with lab.shared:        # the front spans candidates that other branches are settling too
        _settle(lab, candidate, round)


def _settle(lab: Lab, candidate: Candidate, round: int) -> None:
    others = [c for c in lab.recorder.load_all() if c.id != candidate.id]
    objective.apply(candidate, lab.objective)
    found = scoring.over_random(candidate, others, lab.objective)
    if found is not None:
        candidate.over_random = found
    lab.recorder.save(candidate)
    front, changed = objective.write_front(lab.run_dir, lab.spec.name, others + [candidate], lab.objective)
    if changed:
        lab.events.emit(ParetoFront(round=round, task=lab.spec.name, ids=[p["id"] for p in front]))


def report_tau(lab: Lab, round: int) -> None:
    """Log the cheap score's current rank agreement with the expensive quality (`cheap_score`), once per round."""
    report = screening.tau_report(lab.recorder.load_all(), lab.spec, lab.objective.metric,
                                  lab.objective.higher_is_better)
    lab.events.emit(CheapScoreReport(round=round, **report))


def reuse_twin(lab: Lab, candidate: Candidate, fidelity: str, round: int,
               peers: list[Candidate]) -> EvalResult | None:
    """The earlier result of a functional twin among `peers` at this fidelity, copied to this candidate; None if none."""
    twin = functional_twin(candidate, fidelity, peers)
    if twin is None:
        return None
    lab.events.emit(CacheHit(round=round, candidate_id=candidate.id, twin_id=twin.id, fidelity=fidelity,
                             functional_hash=candidate.functional_hash))
    if fidelity in twin.seeds:
        candidate.seeds[fidelity] = [r.model_copy(update={"candidate_id": candidate.id}) for r in twin.seeds[fidelity]]
    return twin.evaluations[fidelity].model_copy(update={"job_id": f"{candidate.id}-{fidelity}-cached",
                                                         "candidate_id": candidate.id})


def functional_twin(candidate: Candidate, fidelity: str, peers: list[Candidate]) -> Candidate | None:
    """An earlier candidate with the same functional hash (same outputs on fixed inputs, same parameter count)
    that already has an `ok` result at this fidelity, or None."""
    check = candidate.evaluations.get("check")
    digest = check.environment.get("functional_hash") if check is not None else None
    if not digest:
        return None
    candidate.functional_hash = digest
    for other in peers:
        other_check = other.evaluations.get("check")
        if other.id != candidate.id and other_check is not None \
                and other_check.environment.get("functional_hash") == digest \
                and other.evaluations.get(fidelity) is not None and other.evaluations[fidelity].ok:
            return other
    return None


def route_after_evaluate(lab: Lab):
    def route(state: CandidateState) -> str:
        return gate(lab, state)
    return route
