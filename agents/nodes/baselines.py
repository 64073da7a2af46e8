"""Round 0: the task's baselines, and the run's random reference architectures, measured before any proposal.

The baselines are the task's own (`Task.baselines`) or its search space's (`agents.spaces`):
architectures, or for decode its two greedy references as candidates.

Baselines get `proxy` and `short` (each job checks the contract first), so the first parents
have real scores and the proxy rung has peers. With `random_pool` > 0, that many random
members of the task's search space (`SearchSpace.random_genomes`, drawn from the run's seed)
are measured the same way, and at `full` too when the run promotes to `full`: they are the yardstick of "better than the average random
architecture", never parents. They are measured side by side, as many at once as the
executor has workers, and their `baseline` / `random_reference` events are logged in a fixed
order once all are done.

The noise floor: each baseline is also trained at `short` from `noise_seeds - 1` more seeds
(`loop.noise_seeds`, default 2: one more short job per baseline; the baselines are the
cheapest architectures of the run). Its score stays seed 0's, so every candidate at `short`
is one run; the extra runs sit in `seeds["short"]`, where `agents.scoring.noise_floors`
reads the seed-to-seed spread (with the random references' seeds at `full`). The floor is
logged as a `noise_floor` event once round 0 is measured.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agents import anchors, scoring
from agents.event_types import Baseline, CandidateCollected, NoiseFloor, RandomReference, RandomReferenceSkipped
from agents.lab import Lab
from agents.nodes.evaluate import settle, train_seeds
from agents.offline.engine import genome_hash
from agents.records import Candidate
from agents.spaces import task_baselines, task_space
from agents.state import LoopState
from evaluators.tasks import task_of
from wire.jobs import EvalResult



def make(lab: Lab):
    def baselines(state: LoopState) -> LoopState:
        jobs, tried = [], []
        found = task_baselines(task_of(lab.spec), lab.spec)
        for name, (genome, source) in found.items():
            candidate = Candidate(id=baseline_id(name, found), run_id=lab.run_id, task=lab.spec.name,
                                  title=f"baseline: {name}", motivation="reference architecture", change="baseline",
                                  source=source, origin="baseline", status="baseline", genome=genome)
            jobs.append((candidate, f"baseline {name}", False))
            tried += [genome_hash(genome), candidate.source_hash]
        references = random_references(lab)
        space = task_space(task_of(lab.spec))
        for cid, genome in references:
            candidate = Candidate(id=cid, run_id=lab.run_id, task=lab.spec.name, title=f"random: {cid}",
                                  motivation="a random architecture of the search space, the yardstick",
                                  change="random", source=space.render(genome, title="A random architecture."),
                                  origin="random", status="reference", genome=genome)
            jobs.append((candidate, f"random reference {cid}", lab.limits.loop.promote_fraction > 0))
            tried += [genome_hash(genome), candidate.source_hash]      # measured already: not a proposal
        # measured side by side, as many at once as the executor has workers; logged in a fixed order. The noise
        # seeds queue behind the rest, so they fill the workers that the slowest references leave idle.
        with ThreadPoolExecutor(max_workers=max(1, lab.parallelism)) as pool:
            futures = [pool.submit(measure_one, lab, candidate, stage, full) for candidate, stage, full in jobs]
            extra = {candidate.id: [pool.submit(noise_seed, lab, candidate, k) for k in range(1, noise_seeds(lab))]
                     for candidate, _, _ in jobs if candidate.status == "baseline"}
            for future in futures:
                future.result()
            measured = {cid: [f.result() for f in found] for cid, found in extra.items()}
        for candidate, _, _ in jobs:
            short = candidate.evaluations.get("short")
            if candidate.id in measured and short is not None and short.ok:
                candidate.seeds["short"] = [short, *measured[candidate.id]]
                lab.recorder.save(candidate)
        for candidate, _, _ in jobs:
            if candidate.status == "baseline":
                result = candidate.evaluations["short"]
                lab.events.emit(Baseline(candidate_id=candidate.id, status=result.status, metrics=result.metrics))
            else:
                result = candidate.evaluations.get("full") or candidate.evaluations["short"]
                lab.events.emit(RandomReference(candidate_id=candidate.id, genome=candidate.genome,
                                                status=result.status, fidelity=result.fidelity, metrics=result.metrics))
        for candidate, _, _ in jobs:        # what the first proposals see (`Lab.peers`), in a fixed order
            lab.events.emit(CandidateCollected(round=0, candidate_id=candidate.id))
        if references:                  # the baselines measured before the yardstick existed
            for candidate in lab.recorder.load_all():
                if candidate.status == "baseline":
                    settle(lab, candidate, 0)
        log_noise_floor(lab, 0)
        anchors.maybe_fit(lab, 0)
        return {"round": 0, "tried": tried}
    return baselines


def noise_seeds(lab: Lab) -> int:
    """Runs of each baseline at `short` (`loop.noise_seeds`)."""
    return max(1, lab.limits.loop.noise_seeds)


def noise_seed(lab: Lab, candidate: Candidate, k: int) -> EvalResult:
    """One more run of a baseline at `short`, from seed lab.seed + k: only its spread is used."""
    lab.stage(0, f"noise floor: {candidate.id} seed {k}")
    return lab.run_job(candidate, "short", seed_index=k)


def log_noise_floor(lab: Lab, round: int) -> None:
    """Log the run's noise floor (`agents.scoring.noise_floors`) when it is new or changed since the last one logged."""
    floors = scoring.noise_floors(lab.peers(len(lab.collected())), lab.objective)
    entries = [floor.as_event() for floor in floors.values()]
    last = next((e.data for e in reversed(lab.events.history) if isinstance(e.data, NoiseFloor)), None)
    if last is not None and [f.model_dump() for f in last.floors] == entries:
        return
    used = ("short", "full") if lab.limits.loop.promote_fraction > 0 else ("short",)
    missing = [f"{rung}: no baseline or random reference has two successful runs there" + (
        " yet (a baseline trained at full as a parent adds one)" if rung == "full" else "")
        for rung in used if rung not in floors]
    lab.events.emit(NoiseFloor(round=round, floors=entries, missing="; ".join(missing)))


def baseline_id(name: str, names) -> str:
    """`b-` and the name's first word (softmax_attention -> b-softmax), or the whole name where first words clash
    (lm_transformer and lm_gla -> b-lm-transformer, b-lm-gla)."""
    first = name.split("_")[0]
    clash = sum(other.split("_")[0] == first for other in names) > 1
    return f"b-{name.replace('_', '-') if clash else first}"


def measure_one(lab: Lab, candidate: Candidate, stage: str, full: bool) -> None:
    lab.stage(0, stage)
    measure(lab, candidate, full)


def measure(lab: Lab, candidate: Candidate, full: bool) -> None:
    """proxy (when the run has that rung), then short (then full over seeds), each recorded as it finishes."""
    rungs = ("proxy", "short") if lab.limits.keep_proxy is not None else ("short",)
    for fidelity in rungs + ("full",) if full else rungs:
        if fidelity == "full":
            result = candidate.evaluations["full"] = train_seeds(lab, candidate, "full")
        else:
            result = candidate.evaluations[fidelity] = lab.run_job(candidate, fidelity)
        if fidelity == "proxy" and result.ok:
            candidate.evaluations.setdefault("check", result)
        settle(lab, candidate, 0)
        if not result.ok and fidelity != "proxy":
            break


def random_references(lab: Lab) -> list[tuple[str, dict]]:
    """(id, genome) of the run's random architectures; none for tasks the building blocks cannot serve."""
    if lab.limits.loop.random_pool <= 0:
        return []
    space = task_space(task_of(lab.spec))
    if space is None or space.random_genomes is None or space.render is None:
        lab.events.emit(RandomReferenceSkipped(reason=f"{lab.spec.name} declares no search space that can "
                        "draw random members" + (f" ({space.name} cannot)" if space is not None else "")))
        return []
    genomes = space.random_genomes(lab.limits.loop.random_pool, lab.seed)
    return [(f"r-{i + 1:02d}", genome) for i, genome in enumerate(genomes)]
