"""The search policy: which parents to build on, and which proposal to try next, learned from every evaluation.

The policy, stated with its sources:

- **Parents by tournament** (regularised evolution, Real et al. 2019, "Regularized Evolution for
  Image Classifier Architecture Search"): draw `TOURNAMENT` members from the `POOL` best of the
  population, the one with the highest value wins. The population is every scored candidate the
  search may build on: baselines, proposals and random references alike (a good reference's genome
  is evidence like any other). A member's value is its standardised quality plus a UCT-style
  novelty term (ASI-Arch samples parents by UCT): `EXPLORE * sqrt(ln(1 + n) / (1 + children))`,
  so a member that has been built on many times yields to an equally good one that has not.
- **Proposals by Thompson sampling** from a Bayesian linear model of the objective over gene values
  (`GeneModel`): "what the best architectures so far have in common", fitted on every evaluation
  with a genome. Proposals, baselines and references enter at their measured quality; a screened
  candidate (stopped by the cheap rung) at the lower quartile of what was measured, a failed one
  below the worst: both are evidence that their genes are not what made the best ones good. The
  prior mean of each gene value comes from the engine (the reading list's priors); the data
  overrides it as evaluations come in. One posterior draw scores every option, and the best-scored
  option wins; the k-th sibling of a round on the same parent takes the k-th best of the same draw,
  so siblings never propose the same thing.
- **Combined changes and jumps**: the options are the parent's single changes, its recombinations
  with the best genome so far (every mix of the two, as crossover in evolution), and, once single
  changes from this parent stall (`STALL` children without a gain, or none left), pairs of changes.

What it does not do: read records from disk (callers pass what they read once per node), know any
search space (genomes are plain dicts of gene -> value; `agents.offline` lists the changes), or
name a metric (quality comes from `agents.scoring` under the run's objective). Host side, numpy only.
"""
from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from agents import scoring
from agents.records import Candidate
from evaluators.fitness import Objective

POOL = 20              # the tournament draws from this many of the best (the population's "alive" part)
TOURNAMENT = 5         # members per tournament (Real et al. use 5-25 for populations of 20-100)
EXPLORE = 0.5          # weight of the UCT novelty term, in standard deviations of quality
STALL = 2              # children of a parent without a gain before pairs of changes are offered
PRIOR_SD = 0.5         # prior standard deviation of one gene value's effect, in standard deviations of quality
NOISE_FLOOR = 0.1      # smallest residual variance assumed (standardised units): measurements are noisy
GAIN = 1e-9            # a child "gains" when its oriented quality beats its parent's by more than this
EVIDENCE = ("baseline", "reference", "evaluated", "screened", "failed")   # statuses that teach the model
BUILD_ON = ("baseline", "reference", "evaluated")                          # statuses that can be parents

Genome = Mapping[str, object]


def gene_values(genome: Genome) -> list[str]:
    """The features of a genome: one `gene=value` string per gene."""
    return [f"{gene}={json.dumps(value, sort_keys=True)}" for gene, value in sorted(genome.items())]


def genome_key(genome: Genome) -> str:
    return json.dumps(dict(genome), sort_keys=True)


# --- what the evaluations say -----------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    genome: dict
    quality: float            # oriented (higher is better), in the objective's units; imputed for screened/failed
    imputed: bool = False


def observations(candidates: Iterable[Candidate], objective: Objective) -> list[Observation]:
    """Every candidate with a genome as evidence: measured quality where there is one, imputed otherwise."""
    measured, unmeasured = [], []
    for c in candidates:
        if c.genome is None or c.status not in EVIDENCE:
            continue
        value = training_quality(c, objective)
        if value is not None and math.isfinite(value):
            measured.append(Observation(dict(c.genome), value))
        elif c.status in ("screened", "failed"):
            unmeasured.append(c)
    if not measured:
        return measured
    values = np.array([o.quality for o in measured])
    low, spread = float(values.min()), float(values.std()) or 1.0
    lower_quartile = float(np.percentile(values, 25))
    imputed = [Observation(dict(c.genome), lower_quartile if c.status == "screened" else low - spread, True)
               for c in unmeasured]
    return measured + imputed


def training_quality(candidate: Candidate, objective: Objective) -> float | None:
    """The oriented quality at the cheapest training fidelity the candidate finished: the one every
    trained candidate shares, so values are comparable across the population."""
    for fidelity in reversed(scoring.FIDELITIES):
        value = scoring.quality_at(candidate, objective, fidelity)
        if value is not None:
            return value
    return None


@dataclass
class GeneModel:
    """Bayesian linear regression of standardised quality on one-hot gene values (numpy only)."""

    features: list[str]                       # the gene values seen, in a fixed order
    mean: np.ndarray                          # posterior mean of each feature's effect (standardised units)
    cov: np.ndarray                           # posterior covariance
    centre: float = 0.0                       # quality = centre + scale * prediction
    scale: float = 1.0
    count: int = 0                            # observations fitted

    def __post_init__(self) -> None:
        self._index = {f: i for i, f in enumerate(self.features)}

    @classmethod
    def fit(cls, observed: Sequence[Observation], priors: Mapping[str, float] | None = None,
            extra: Iterable[Genome] = ()) -> "GeneModel":
        """Fit on `observed`; `priors` maps `gene=value` to its prior mean effect; `extra` genomes (the options to be
        scored) add their gene values as features the data has not seen (prior only)."""
        priors = dict(priors or {})
        names = sorted({f for o in observed for f in gene_values(o.genome)} | set(priors)
                       | {f for g in extra for f in gene_values(g)})
        index = {f: i for i, f in enumerate(names)}
        prior_mean = np.array([priors.get(f, 0.0) for f in names])
        precision = np.eye(len(names)) / PRIOR_SD ** 2
        if not observed:
            return cls(names, prior_mean, np.linalg.inv(precision))
        y = np.array([o.quality for o in observed])
        centre, scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - centre) / scale
        x = np.zeros((len(observed), len(names)))
        for row, o in enumerate(observed):
            for f in gene_values(o.genome):
                x[row, index[f]] = 1.0
        # residual variance from a ridge fit, floored: a handful of points must not look noise-free
        ridge = np.linalg.solve(x.T @ x + precision, x.T @ z + precision @ prior_mean)
        noise = max(NOISE_FLOOR, float(np.mean((z - x @ ridge) ** 2)))
        posterior = precision + x.T @ x / noise
        cov = np.linalg.inv(posterior)
        mean = cov @ (precision @ prior_mean + x.T @ z / noise)
        return cls(names, mean, (cov + cov.T) / 2, centre, scale, len(observed))

    def vector(self, genome: Genome) -> np.ndarray:
        x = np.zeros(len(self.features))
        for f in gene_values(genome):
            if f in self._index:
                x[self._index[f]] = 1.0
        return x

    def predict(self, genome: Genome) -> float:
        """Predicted standardised quality (0: the population's mean)."""
        return float(self.vector(genome) @ self.mean)

    def draw(self, rng: random.Random) -> np.ndarray:
        """One posterior draw of the effects (Thompson sampling)."""
        generator = np.random.default_rng(rng.getrandbits(63))
        return generator.multivariate_normal(self.mean, self.cov, method="cholesky")

    def traits(self, k: int = 3) -> list[tuple[str, float]]:
        """The gene values with the largest estimated effects: what the best so far have in common."""
        order = sorted(range(len(self.features)), key=lambda i: -self.mean[i])
        return [(self.features[i], float(self.mean[i])) for i in order[:k] if self.mean[i] > 0]


def describe_traits(model: GeneModel, k: int = 3) -> str:
    """The model's strongest positive gene values in words (for plans and prompts); "" before any evidence."""
    if model.count == 0:
        return ""
    traits = model.traits(k)
    if not traits:
        return ""
    shown = ", ".join(f"{name} ({effect:+.2f} sd)" for name, effect in traits)
    return f"Across {model.count} evaluations, the gene values most associated with quality: {shown}."


# --- parents ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    candidate: Candidate
    quality: float            # standardised
    children: int


def population(candidates: list[Candidate], objective: Objective) -> list[Member]:
    """Members that can be built on, best first by `agents.scoring` (feasible before infeasible); each with its
    standardised quality and how many children it already has."""
    pool = [s for s in scoring.ranked(candidates, objective, BUILD_ON)]
    feasible = [s for s in pool if s.feasible] or pool
    if not feasible:
        return []
    values = np.array([s.quality if math.isfinite(s.quality) else np.nan for s in feasible])
    finite = values[np.isfinite(values)]
    centre, spread = (float(finite.mean()), float(finite.std()) or 1.0) if finite.size else (0.0, 1.0)
    children: dict[str, int] = {}
    for c in candidates:
        for pid in c.parent_ids[:1]:
            children[pid] = children.get(pid, 0) + 1
    return [Member(s.candidate, (v - centre) / spread if math.isfinite(v) else -10.0, children.get(s.candidate.id, 0))
            for s, v in zip(feasible, values)]


def tournament(members: list[Member], rng: random.Random, size: int = TOURNAMENT, pool: int = POOL,
               explore: float = EXPLORE) -> Member | None:
    """The winner of one tournament among the `pool` best members (value: quality + UCT novelty)."""
    alive = members[:pool]
    if not alive:
        return None
    drawn = rng.sample(alive, min(size, len(alive)))
    total = sum(m.children for m in members)
    return max(drawn, key=lambda m: m.quality + explore * math.sqrt(math.log(1 + total) / (1 + m.children)))


def choose_parents(candidates: list[Candidate], objective: Objective, count: int, seed: str,
                   explore: float = EXPLORE) -> list[Candidate]:
    """`count` parents for a round, one tournament each (seeded by `seed` and the slot); [] when nothing is scored."""
    members = population(candidates, objective)
    chosen = []
    for slot in range(count):
        winner = tournament(members, random.Random(f"{seed}:{slot}"), explore=explore)
        if winner is not None:
            chosen.append(winner.candidate)
    return chosen


# --- proposals --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """A genome the planner could propose, with how it was reached from the parent."""
    genome: dict
    change: str               # the change kind (a catalogue kind, "combine" or "a+b")
    detail: str
    motivation: str = ""
    expected: str = ""
    parts: tuple = field(default=())   # the single changes it is made of


def recombinations(parent: Genome, elite: Genome) -> list[dict]:
    """Every genome taking each gene from `parent` or `elite` (neither of the two itself)."""
    genes = sorted(set(parent) | set(elite))
    differing = [g for g in genes if parent.get(g) != elite.get(g)]
    if not differing or len(differing) > 10:          # 2^10 mixes is plenty; beyond, skip crossover
        return []
    out = []
    for picks in itertools.product((False, True), repeat=len(differing)):
        if all(picks) or not any(picks):
            continue
        child = dict(parent)
        for gene, take in zip(differing, picks):
            if take:
                child[gene] = elite.get(gene)
        out.append(child)
    return out


def compose(parent: Genome, singles: list[Option], elite: tuple[str, Genome] | None = None, pairs: bool = False,
            check=lambda genome: genome, max_pairs: int = 400) -> list[Option]:
    """The options of one parent: its `singles`, its recombinations with the `elite` (id, genome), and with `pairs`
    every two single changes of different kinds at once. `check` completes a genome or raises ValueError."""
    out = list(singles)
    if elite is not None:
        elite_id, elite_genome = elite
        for mixed in recombinations(parent, elite_genome):
            try:
                genome = check(mixed)
            except ValueError:
                continue
            moved = [k for k in sorted(genome) if genome[k] != parent.get(k)]
            out.append(Option(genome, "combine", f"take from {elite_id}: "
                              + ", ".join(f"{k} {parent.get(k)} -> {genome[k]}" for k in moved),
                              f"Recombination: {elite_id} ranks among the best so far; this takes its "
                              f"{', '.join(moved)} into the parent, testing whether those genes carry its quality.",
                              f"closer to {elite_id}'s quality", ("combine",)))
    if pairs:
        count = 0
        for a, b in itertools.combinations(singles, 2):
            if a.change == b.change:
                continue
            if count >= max_pairs:
                break
            try:
                genome = check({**a.genome, **{k: v for k, v in b.genome.items() if v != parent.get(k)}})
            except ValueError:
                continue
            count += 1
            out.append(Option(genome, f"{a.change}+{b.change}", f"{a.detail}; {b.detail}",
                              f"Single changes from this parent have stalled, so two at once: {a.motivation} "
                              f"{b.motivation}", f"{a.expected}; {b.expected}", (a.change, b.change)))
    return out


def elite_of(candidates: list[Candidate], objective: Objective, besides: str) -> Candidate | None:
    """The best member with a genome other than `besides` (the parent itself)."""
    return next((m.candidate for m in population(candidates, objective)
                 if m.candidate.genome is not None and m.candidate.id != besides), None)


def stalled(parent: Candidate, candidates: list[Candidate], objective: Objective) -> bool:
    """The parent has `STALL` children and none of them beat it."""
    mine = training_quality(parent, objective)
    kids = [c for c in candidates if c.parent_ids[:1] == [parent.id] and c.status in EVIDENCE]
    if len(kids) < STALL:
        return False
    gains = [q for c in kids if (q := training_quality(c, objective)) is not None]
    return mine is None or not any(q > mine + GAIN for q in gains)


def rank_options(options: list[Option], model: GeneModel, rng: random.Random,
                 bonus: Mapping[str, float] | None = None) -> list[tuple[float, Option]]:
    """Options best first under one posterior draw; `bonus` adds a per-change-kind term (standardised units)."""
    if not options:
        return []
    effects = model.draw(rng)
    bonus = bonus or {}
    scored = [(float(model.vector(o.genome) @ effects) + bonus.get(o.change, 0.0), i, o) for i, o in enumerate(options)]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [(s, o) for s, _, o in scored]
