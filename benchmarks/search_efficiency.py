"""Does the lab's search need fewer evaluations than random search and regularised evolution?

For each space, at a budget of N evaluations and over many seeds, the lab's search policy,
random search and regularised evolution (REA) run side by side on exactly the same space; the
benchmark reports best-so-far curves (median and inter-quartile range over seeds), each
method's evaluations to reach random search's median best-of-N (a seed that never reaches it
counts N + 1), one-sided Mann–Whitney U tests of "the lab needs fewer evaluations than random
/ than REA" and "the lab's best-of-N is higher" (`scipy.stats.mannwhitneyu`), and the final gap.

Spaces:
- `nb201`: NAS-Bench-201 as a tabular benchmark (`--nb201 FILE`, the `nb201_val_accuracy.json`
  table; skipped when absent), through the shipped `nb201` task (`evaluators.tasks.nb201`): a
  genome is the cell's six edge ops, an evaluation the task's lookup of CIFAR-10 validation
  accuracy; every method draws from all 15,625 cells. The lab is the task's own offline engine
  (`agents.offline.nb201.CellEngine`: tournament parents, one-edge changes, Thompson sampling
  from the gene model, recombination with the elite, pairs of changes when stalled; no prior),
  started as `archlab run --task nb201` starts it with `random_pool = NB201_INIT`: the task's
  baseline cell and `NB201_INIT` random cells, all counted in the budget. It is driven the way
  the graph drives it (`nb201_lab`), without the graph's plumbing, which would take hours for
  200 seeds; the first `--nb201-graph-seeds` seeds also run through the real graph
  (`archlab.session`, jobs evaluated in this process), whose evaluations must be the same
  (`graph_check` in the result). REA: population 20, tournament 5, one-edge mutation.
- `mqar`, `charlm`: the shipped sequence tasks, each genome evaluated at the `short` fidelity
  of `SEQ_SETTINGS` through the harness (`evaluators.harness.evaluate`: held-out inputs drawn
  from the host's secret, the runner trains and predicts, the host scores) in a child forked
  from the process sandbox's zygote (`sandbox.zygote`: the runner's imports are paid once). The space,
  `SPACE`, is where the lab's offline engine moves (its catalogue, `agents.offline.changes`)
  cut to the small models 2 cores can train thousands of: every gene value the catalogue
  proposes, with `d_model` in {32, 64} and `n_layers` in {1, 2}; mixer "none" is left out
  (the catalogue never proposes it). Random search draws each gene uniformly from `SPACE`
  (distinct models); REA starts from random search's first `REA_POPULATION` draws and mutates
  one gene that changes the model; the lab starts from random search's first `SEQ_INIT` draws
  and then proposes with the offline engine's real planner (`OfflineEngine.plan`) on parents
  from `agents.search.choose_parents`, one candidate per round, its options cut to `SPACE`.
  Within `SPACE` the catalogue can change every gene to every value (`reachable_in_one_change`;
  tests/test_search.py checks it), so the lab can reach every genome random search or REA can
  draw, and none they cannot. Its `PRIORS` (change-kind weights) cancel out of its choice (only
  their ratio to the measured record enters), so the reading list acts through `GENE_PRIORS`
  alone. The lab runs twice: with the reading list's gene priors (`GENE_PRIORS`) and without (`lab_no_priors`).
  A genome's value is one training with the seed's training seed, shared by every method
  (models that differ only in genes they do not use are one model).

    python benchmarks/search_efficiency.py --spaces nb201
    nice -n 19 python benchmarks/search_efficiency.py --spaces mqar --seeds 20 --jobs 2
    nice -n 19 python benchmarks/search_efficiency.py --spaces charlm --seeds 20 --jobs 2

Evaluations are cached per seed (`--cache`), so an interrupted run resumes; the cache key
includes the task's spec and source, so a changed task is evaluated afresh. Writes
`benchmarks/results/search_efficiency.json` (each space's entry replaced, the others kept) and
`.png` with matplotlib installed, and prints one summary line per space.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents import search  # noqa: E402
from agents.offline import engine as offline_engine  # noqa: E402
from agents.offline.blocks import FEATURE_MAPS, FFNS, KERNEL_MIXERS, NORMS, render, validate  # noqa: E402
from agents.records import Candidate  # noqa: E402
from evaluators.fitness import Objective  # noqa: E402
from wire.jobs import EvalResult  # noqa: E402

NB201_INIT = 8                    # random cells the lab starts from (besides the task's baseline cell)
NB201_GRAPH_SEEDS = 3             # seeds also run through the real graph, which must make the lab's evaluations
NB201_PUBLISHED = {"random_median_best_of_100": 90.78, "rea_median_evaluations": 37}

# the sequence tasks' space: the catalogue's values, small models only (see the module docstring)
SPACE: dict[str, tuple] = {
    "mixer": ("softmax", "linear", "gated_linear", "decay", "conv"), "feature_map": FEATURE_MAPS,
    "n_heads": (2, 4, 8), "short_conv": (0, 3, 4), "output_gate": (False, True), "norm": NORMS, "ffn": FFNS,
    "ffn_mult": (2, 4), "d_model": (32, 64), "n_layers": (1, 2),
}
SEQ_BUDGET = 20                   # evaluations per method and seed (N)
SEQ_INIT = 4                      # random genomes the lab starts from (random search's own first draws)
REA_POPULATION, REA_SAMPLE = 8, 3  # regularised evolution scaled to N = 20 (Real et al.: 20-100 and 5-25 over 1000s)
# task settings where random search is not saturated at N = 20 and one evaluation costs ~4 CPU-seconds (MQAR)
SEQ_SETTINGS = {"mqar": {"short_steps": 120, "short_seq_len": 24, "short_num_pairs": 4},
                "charlm": {"short_steps": 80, "seq_len": 64}}
SEQ_LIMITS = {"wall_seconds": 600, "memory_mb": 4096, "cpus": 1}
RANDOM_STREAM = 10_000            # random search's draws for seed s come from random.Random(RANDOM_STREAM + s)
METHODS = ("lab", "lab_no_priors", "rea", "random")


# --- records and statistics -----------------------------------------------------------------

def record(cid: str, genome: dict, value: float | None, status: str, metric: str, parent: str | None = None,
           change: str = "bench") -> Candidate:
    """A candidate as the run would store it after a `short` evaluation (value None: failed)."""
    ids = {"job_id": f"{cid}-short", "candidate_id": cid}
    result = (EvalResult(status="ok", fidelity="short", metrics={metric: value}, **ids) if value is not None
              else EvalResult(status="error", fidelity="short", message="failed", **ids))
    return Candidate(id=cid, run_id="bench", task="bench", title=cid, motivation="", change=change, source="",
                     status=status if value is not None else "failed", genome=genome,
                     parent_ids=[parent] if parent else [], evaluations={"short": result})


def best_so_far(values: list[float], length: int) -> list[float]:
    """The running maximum, padded to `length` with its last value (a search that ran out of proposals)."""
    curve = list(np.maximum.accumulate(np.array(values, dtype=float)))
    return curve + [curve[-1]] * (length - len(curve))


def reach(curve: list[float], target: float) -> int | None:
    """Evaluations needed to reach `target` (1-based), None when never."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


def rank_test(ours: list[float], theirs: list[float], alternative: str) -> dict:
    """One-sided Mann–Whitney U of `ours` against `theirs`, with the probability that one of ours is on the
    `alternative` side of one of theirs (ties count half)."""
    found = stats.mannwhitneyu(ours, theirs, alternative=alternative)
    share = found.statistic / (len(ours) * len(theirs))          # P(ours > theirs) + half the ties
    return {"alternative": alternative, "U": float(found.statistic), "p": float(found.pvalue),
            "probability": float(1 - share if alternative == "less" else share), "n": [len(ours), len(theirs)]}


def compare(curves: dict[str, list[list[float]]], budget: int, horizon: int | None = None, lab: str = "lab") -> dict:
    """The figures every space reports, from best-so-far curves (method -> one curve per seed): the target is
    random search's median best-of-`budget`; evaluations to reach it are counted up to `horizon` (default
    `budget`), a seed that never does counting `horizon` + 1."""
    horizon = horizon or budget
    target = statistics.median(c[budget - 1] for c in curves["random"])
    needed = {k: [reach(c[:horizon], target) or horizon + 1 for c in runs] for k, runs in curves.items()}
    final = {k: [c[budget - 1] for c in runs] for k, runs in curves.items()}
    others = [k for k in curves if k != lab]
    tests = {f"{lab}_fewer_evaluations_than_{k}": rank_test(needed[lab], needed[k], "less") for k in others}
    tests.update({f"{lab}_higher_best_than_{k}": rank_test(final[lab], final[k], "greater") for k in others})
    return {"budget": budget, "horizon": horizon, "random_median_best_of_budget": target,
            "median_evaluations_to_random_median": {k: statistics.median(v) for k, v in needed.items()},
            "iqr_evaluations_to_random_median": {k: list(np.percentile(v, [25, 75])) for k, v in needed.items()},
            "evaluations_to_random_median": needed, "best_of_budget": final,
            "final_gap_at_budget": {k: statistics.median(v) - target for k, v in final.items()},
            "rank_tests": tests, "curves": summarise(curves, budget)}


def summarise(curves: dict[str, list[list[float]]], length: int) -> dict:
    out = {}
    for name, runs in curves.items():
        grid = np.array([c[:length] for c in runs])
        out[name] = {"median": list(np.median(grid, 0)), "q25": list(np.percentile(grid, 25, 0)),
                     "q75": list(np.percentile(grid, 75, 0))}
    return out


# --- NAS-Bench-201 ------------------------------------------------------------------------

def nb201_table(path: Path) -> dict[tuple[int, ...], float]:
    data = json.loads(path.read_text())
    return {tuple(a["arch"]): float(a["val_accuracy"]["cifar10"]) for a in data["architectures"]}


class NB201Evaluator:
    """The nb201 task's own evaluation, in this process: the candidate module is written to a job's inputs, the
    task's sandbox side (`NB201.run_in_sandbox`) reads its cell, and the host side (`NB201.score`) looks it up.
    Used as the graph's `evaluator` too (`(sandbox, job, jobdir) -> EvalResult`; the sandbox is not used: the
    modules are the engine's own renderings, nothing hostile). A context manager: the inputs folder goes at exit."""

    def __init__(self, spec):
        from evaluators.tasks import task_of
        self.spec, self.task = spec, task_of(spec)
        self.inputs = Path(tempfile.mkdtemp(prefix="nb201-bench-"))

    def __enter__(self) -> "NB201Evaluator":
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.inputs, ignore_errors=True)

    def value(self, source: str, fidelity: str = "short") -> tuple[dict, dict]:
        """(metrics, environment) of the module `source` at `fidelity`; ContractViolation for a bad one."""
        import torch
        (self.inputs / "candidate.py").write_text(source)
        out = self.task.run_in_sandbox(self.spec, fidelity, 0, self.inputs, self.inputs, {}, torch.device("cpu"),
                                       time.perf_counter)
        metrics = dict(out.metrics)
        if out.predictions is not None:
            metrics.update(self.task.score(self.spec, out.predictions, None))
        return metrics, {"functional_hash": out.functional_hash} if out.functional_hash else {}

    def __call__(self, sandbox, job, jobdir: Path) -> EvalResult:
        metrics, environment = self.value(job.source, job.fidelity)
        return EvalResult(job_id=job.job_id, candidate_id=job.candidate_id, fidelity=job.fidelity, status="ok",
                          metrics=metrics, environment=environment)


def nb201_start(evaluate: NB201Evaluator, seed: int) -> list[Candidate]:
    """Round 0 as the graph measures it with `random_pool = NB201_INIT`: the space's baseline, then its random
    cells (`agents.spaces`, drawn from the run's seed), as the records the run would store."""
    from agents.records import source_hash
    from agents.spaces import get_space
    space = get_space(evaluate.task.search_space)
    metric = evaluate.task.metric

    def measured(cid: str, genome: dict, source: str, status: str, change: str) -> Candidate:
        made = record(cid, genome, evaluate.value(source)[0][metric], status, metric, change=change)
        return made.model_copy(update={"source": source, "source_hash": source_hash(source)})

    out = [measured(f"b-{name.split('_')[0]}", genome, source, "baseline", "baseline")
           for name, (genome, source) in space.baselines().items()]
    for i, genome in enumerate(space.random_genomes(NB201_INIT, seed)):
        out.append(measured(f"r-{i + 1:02d}", genome, space.render(genome, title="A random architecture."),
                            "reference", "random"))
    return out


def nb201_lab(spec, budget: int, seed: int, until: float | None = None) -> list[float]:
    """The lab on the table, one candidate per round: the nb201 task's engine (`CellEngine.plan` and `.code`, the
    one `archlab run --task nb201` builds), parents as the select node chooses them (`agents.search.choose_parents`,
    the plan node's fall-back to the next best parent), the candidate's module evaluated by the task itself
    (`NB201Evaluator`). The graph's own plumbing (LangGraph, the run store, the knowledge store) is left out, which
    makes a step ~30 times cheaper; `nb201_graph` checks on a few seeds that the graph makes the same evaluations.
    With `until`, it stops as soon as its best reaches `until` (`run_nb201` uses that past the reported budget, where
    no figure depends on what comes after)."""
    with NB201Evaluator(spec) as evaluate:
        return _nb201_lab(evaluate, spec, budget, seed, until)


def _nb201_lab(evaluate: NB201Evaluator, spec, budget: int, seed: int, until: float | None) -> list[float]:
    from agents.engine import PlanContext
    from agents.offline.engine import NoProposal, genome_hash
    from agents.offline.nb201 import CellEngine
    from agents.records import source_hash
    from agents.scoring import parents as ranked_parents
    objective = Objective(metric=evaluate.task.metric)
    engine = CellEngine(seed, objective)
    candidates = nb201_start(evaluate, seed)
    tried = {h for c in candidates if c.status == "baseline" for h in (genome_hash(c.genome), source_hash(c.source))}
    values = [c.metric(objective.metric) for c in candidates]
    round = 0
    while len(values) < budget and not (until is not None and max(values) >= until):
        round += 1
        chosen = search.choose_parents(candidates, objective, 1, f"{seed}:select:{round}")
        order = chosen + [c for c in ranked_parents(candidates, objective) if chosen and c.id != chosen[0].id]
        for parent in order:
            try:
                plan = engine.plan(PlanContext(spec=spec, round=round, parent=parent, candidates=candidates,
                                               tried=tried, objective=objective))
            except NoProposal:
                continue
            break
        else:
            break                               # nothing left to propose from any member (not seen at N = 300)
        source = engine.code(plan, parent, spec)
        tried |= {source_hash(source), genome_hash(plan.genome)}
        value = evaluate.value(source)[0][objective.metric]
        values.append(value)
        made = record(f"c{round:03d}", plan.genome, value, "evaluated", objective.metric, parent.id, plan.change)
        candidates = sorted([*candidates, made], key=lambda c: c.id)        # the run store's order (ties in rank)
    return values


def nb201_graph(path: Path, budget: int, seed: int) -> list[float]:
    """The same policy through the real graph (`archlab.session`: select, plan, code, check, evaluate, analyze,
    remember; one candidate per round, `random_pool = NB201_INIT`), each job evaluated in this process by
    `NB201Evaluator` instead of a sandbox: the `short` values in the order the run logged them."""
    from archlab.session import drive, open_lab, start_run
    from archlab.settings import Settings
    with tempfile.TemporaryDirectory(prefix="nb201-graph-") as tmp:
        settings = Settings(task="nb201", task_options={"table": str(path)}, seed=seed, runs_dir=Path(tmp),
                            rounds=budget - NB201_INIT - 1,
                            loop={"batch": 1, "lookahead": 0, "random_pool": NB201_INIT, "noise_seeds": 1,
                                  "proxy_rung": False},
                            executor={"warm": False, "workers": 1}, knowledge={"embedder": "hashing"})
        run_id, run_dir = start_run(settings)
        with open_lab(settings, run_id, run_dir) as lab, NB201Evaluator(lab.spec) as evaluate:
            lab.evaluator = evaluate
            drive(lab)
            return [e.payload["metrics"][lab.objective.metric] for e in lab.events.history
                    if e.type == "result" and e.payload["fidelity"] == "short"]


def nb201_random(table, budget: int, seed: int) -> list[float]:
    rng = random.Random(f"random:{seed}")
    archs = list(table)
    return [table[rng.choice(archs)] for _ in range(budget)]


def nb201_rea(table, budget: int, seed: int, population: int = 20, sample: int = 5) -> list[float]:
    """Regularised evolution (Real et al. 2019) as the issue states it: population 20, tournament 5, one-edge mutation."""
    rng = random.Random(f"rea:{seed}")
    archs = list(table)
    alive: list[tuple[tuple, float]] = []
    values = []
    for _ in range(budget):
        if len(alive) < population:
            arch = rng.choice(archs)
        else:
            parent = max(rng.sample(alive, sample), key=lambda a: a[1])[0]
            edge = rng.randrange(6)
            arch = tuple(rng.choice([o for o in range(5) if o != parent[edge]]) if i == edge else op
                         for i, op in enumerate(parent))
        alive.append((arch, table[arch]))
        values.append(table[arch])
        if len(alive) > population:
            alive.pop(0)
    return values


def run_nb201(path: Path, seeds: int, budget: int = 100, graph_seeds: int = NB201_GRAPH_SEEDS) -> dict:
    from evaluators.tasks import get_task
    table = nb201_table(path)
    spec = get_task("nb201").default_spec(table=str(path))
    horizon = max(budget, 300)
    runs = {"random": [nb201_random(table, horizon, s) for s in range(seeds)],
            "rea": [nb201_rea(table, horizon, s) for s in range(seeds)]}
    target = statistics.median(max(values[:budget]) for values in runs["random"])
    # the lab runs to `budget`, then on to the horizon only until it reaches random's median best-of-`budget`
    started = time.perf_counter()
    runs["lab"] = [nb201_lab(spec, budget, s) for s in range(seeds)]
    runs["lab"] = [v if max(v) >= target else nb201_lab(spec, horizon, s, until=target) for s, v in enumerate(runs["lab"])]
    lab_seconds = time.perf_counter() - started
    curves = {name: [best_so_far(runs[name][s], horizon) for s in range(seeds)] for name in ("lab", "rea", "random")}
    found = compare(curves, budget, horizon)
    # the graph itself on the first seeds, to the budget: the lab's evaluations must come out the same
    started = time.perf_counter()
    graph = [nb201_graph(path, budget, s) for s in range(min(graph_seeds, seeds))]
    same = [values == runs["lab"][s][:budget] for s, values in enumerate(graph)]
    return {"space": "nb201", "metric": "cifar10 validation accuracy", "seeds": seeds, "published": NB201_PUBLISHED,
            "space_size": len(table),
            "methods": {"lab": f"the nb201 task's offline engine (agents.offline.nb201.CellEngine), parents as the "
                               f"graph's select node chooses them; starts from the baseline cell and {NB201_INIT} "
                               "random cells (counted); each module evaluated by the task (in this process)",
                        "rea": "population 20, tournament 5, one-edge mutation", "random": "uniform over the cells"},
            "lab_seconds": round(lab_seconds, 1),
            "graph_check": {"seeds": len(graph), "evaluations": budget, "identical_to_lab": sum(same),
                            "seconds": round(time.perf_counter() - started, 1)},
            **found}


# --- the sequence tasks' space ----------------------------------------------------------------

def canonical(genome: dict) -> dict:
    """The genome with genes its model does not use set to one value: a feature map only shapes kernel
    mixers, and the convolution mixer has no heads. Two genomes with the same canonical form render the
    same model, so they train to the same value."""
    g = validate(genome)
    if g["mixer"] not in KERNEL_MIXERS:
        g["feature_map"] = FEATURE_MAPS[0]
    if g["mixer"] == "conv":
        g["n_heads"] = 4
    return g


def key(genome: dict) -> str:
    return json.dumps(canonical(genome), sort_keys=True)


def in_space(genome: dict) -> bool:
    g = validate(genome)
    return all(g[gene] in values for gene, values in SPACE.items())


def space_size() -> tuple[int, int]:
    """(genomes in SPACE, distinct models among them)."""
    genomes = [dict(zip(SPACE, values)) for values in itertools.product(*SPACE.values())]
    return len(genomes), len({key(g) for g in genomes})


def random_draws(n: int, seed: int) -> list[dict]:
    """Random search's first `n` genomes for `seed`: each gene uniform over SPACE, distinct models."""
    rng = random.Random(RANDOM_STREAM + seed)
    out, seen = [], set()
    while len(out) < n:
        genome = validate({gene: rng.choice(values) for gene, values in SPACE.items()})
        if key(genome) not in seen:
            seen.add(key(genome))
            out.append(genome)
    return out


def mutate(genome: dict, rng: random.Random) -> dict:
    """REA's mutation: one gene the model uses, set to another of its values in SPACE."""
    base = canonical(genome)
    genes = [g for g in SPACE if len(SPACE[g]) > 1 and not (g == "feature_map" and base["mixer"] not in KERNEL_MIXERS)
             and not (g == "n_heads" and base["mixer"] == "conv")]
    gene = rng.choice(genes)
    return validate({**genome, gene: rng.choice([v for v in SPACE[gene] if v != genome[gene]])})


def reachable_in_one_change(genome: dict, spec) -> dict[str, set]:
    """The gene values one catalogue change (cut to SPACE) can set from `genome`: for every gene, every
    other value of SPACE, except a feature map on a non-kernel mixer and heads or a short convolution on the
    convolution mixer (reached by switching the mixer first). Hence every genome of SPACE reaches every other."""
    from agents.offline.changes import proposals
    g = validate(genome)
    found: dict[str, set] = {gene: set() for gene in SPACE}
    for p in proposals(g, spec):
        if in_space(p.genome):
            for gene in SPACE:
                if p.genome[gene] != g[gene]:
                    found[gene].add(p.genome[gene])
    return found


class SpaceEngine(offline_engine.OfflineEngine):
    """The offline engine with its options cut to SPACE, and optionally without the reading list's gene priors."""

    def __init__(self, seed: int, objective: Objective, priors: bool = True):
        super().__init__(seed, objective)
        self.priors = priors

    def options(self, parent_genome, context, objective):
        return [o for o in super().options(parent_genome, context, objective) if in_space(o.genome)]

    def plan(self, context):
        # the planner reads the module's GENE_PRIORS; without priors every gene value starts at 0
        with nullcontext() if self.priors else mock.patch.object(offline_engine, "GENE_PRIORS", {}):
            return super().plan(context)


# --- evaluating genomes ------------------------------------------------------------------------

@functools.cache
def _task_source(path: str) -> str:
    return Path(path).read_text()       # read once per process, as close as may be to when the task was imported


def fingerprint(task, spec) -> str:
    """What a cached value depends on besides the genome and the seed: the task's spec and its code."""
    text = spec.model_dump_json() + _task_source(inspect.getfile(type(task)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Evaluations:
    """Each genome's `short` value on one seed, through the harness; one evaluation per model, kept on disk."""

    def __init__(self, task_name: str, options: dict, seed: int, cache: Path, cached_only: bool = False,
                 cache_key: str | None = None):
        from sandbox.process import ProcessSandbox
        from evaluators.tasks import get_task
        from wire.jobs import Limits
        self.task = get_task(task_name)
        self.spec = self.task.default_spec(**options)
        self.seed = seed
        self.limits = Limits(**SEQ_LIMITS)
        self.sandbox = ProcessSandbox()
        self.cache_key = cache_key or fingerprint(self.task, self.spec)
        self.path = cache / f"{task_name}-{self.cache_key}-s{seed}.json"
        self.values: dict[str, float | None] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.cached_only = cached_only
        self.trained = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __call__(self, genome: dict) -> float | None:
        k = key(genome)
        if k not in self.values and self.cached_only:
            raise NotCached(k)
        if k not in self.values:
            self.values[k] = self._evaluate(canonical(genome))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.values))
            os.replace(tmp, self.path)
        return self.values[k]

    def _evaluate(self, genome: dict) -> float | None:
        from evaluators.harness import evaluate
        from wire.jobs import EvalJob
        job = EvalJob(job_id=f"bench-{self.trained}", candidate_id="bench", source=render(genome), task=self.spec,
                      fidelity="short", limits=self.limits, seed=self.seed)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
            result = evaluate(self.sandbox, job, Path(tmp))
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += result.timings.get("cpu_seconds", 0.0)
        self.trained += 1
        if result.status == "sandbox_error":          # infrastructure, not the genome: stop rather than record
            raise RuntimeError(f"the sandbox could not run a job: {result.message}")
        return result.metrics.get(self.task.metric) if result.status == "ok" else None


def check_cache(space: str, cache_key: str | None, cache: Path, n: int) -> str:
    """Evaluate `n` models of seed 0's cache under `cache_key` again with today's code: the largest difference."""
    evaluate = Evaluations(space, SEQ_SETTINGS[space], 0, cache, cache_key=cache_key)
    recorded = [(k, v) for k, v in evaluate.values.items() if v is not None][:n]
    gaps = [abs(evaluate._evaluate(canonical(json.loads(k))) - v) for k, v in recorded]
    return (f"{space}: {len(gaps)} cached models under {evaluate.cache_key} evaluated again with today's code "
            f"(fingerprint {fingerprint(evaluate.task, evaluate.spec)}): largest difference {max(gaps):.6f}")


class NotCached(LookupError):
    """`--cached-only`: this seed needs an evaluation that is not in the cache yet."""


def seq_random(evaluate: Evaluations, budget: int, seed: int) -> list[float | None]:
    return [evaluate(g) for g in random_draws(budget, seed)]


def seq_rea(evaluate: Evaluations, budget: int, seed: int) -> list[float | None]:
    """Regularised evolution on SPACE: random search's first draws, then tournament, mutation and ageing."""
    rng = random.Random(f"rea:{seed}")
    start = random_draws(min(REA_POPULATION, budget), seed)
    alive: list[tuple[dict, float]] = []
    values: list[float | None] = []
    for i in range(budget):
        genome = start[i] if i < len(start) else mutate(max(rng.sample(alive, REA_SAMPLE), key=lambda a: a[1])[0], rng)
        value = evaluate(genome)
        values.append(value)
        alive.append((genome, value if value is not None else -np.inf))
        if len(alive) > REA_POPULATION:
            alive.pop(0)
    return values


def seq_lab(evaluate: Evaluations, budget: int, seed: int, priors: bool = True) -> list[float | None]:
    from agents.engine import PlanContext
    from agents.offline.engine import NoProposal, genome_hash
    objective = Objective(metric=evaluate.task.metric)
    engine = SpaceEngine(seed, objective, priors)
    candidates: list[Candidate] = []
    tried: set[str] = set()
    values: list[float | None] = []

    def add(genome: dict, status: str, parent: str | None, cid: str, change: str = "bench") -> None:
        value = evaluate(genome)
        tried.add(genome_hash(genome))
        values.append(value)
        candidates.append(record(cid, validate(genome), value, status, objective.metric, parent, change))

    for i, genome in enumerate(random_draws(SEQ_INIT, seed)):
        add(genome, "reference", None, f"r-{i + 1:02d}")
    round = 0
    while len(values) < budget:
        round += 1
        parents = search.choose_parents(candidates, objective, 1, f"{seed}:select:{round}")
        chosen = {p.id for p in parents}
        order = parents + [m.candidate for m in search.population(candidates, objective) if m.candidate.id not in chosen]
        for parent in order:
            try:
                plan = engine.plan(PlanContext(spec=evaluate.spec, round=round, parent=parent, candidates=candidates,
                                               tried=tried, objective=objective))
            except NoProposal:
                continue
            add(plan.genome or {}, "evaluated", parent.id, f"c{round:03d}", plan.change)
            break
        else:
            break                                    # every member's options are spent (not seen at N = 20)
    return values


def one_seed(name: str, seed: int, budget: int, cache: Path, cached_only: bool = False,
             cache_key: str | None = None) -> dict | None:
    """Every method on one seed of a sequence task (values None: the evaluation failed); with `cached_only`,
    None when the seed needs an evaluation that is not cached yet."""
    evaluate = Evaluations(name, SEQ_SETTINGS[name], seed, cache, cached_only, cache_key)
    try:
        found = {"random": seq_random(evaluate, budget, seed), "rea": seq_rea(evaluate, budget, seed),
                 "lab": seq_lab(evaluate, budget, seed), "lab_no_priors": seq_lab(evaluate, budget, seed, priors=False)}
    except NotCached:
        return None
    found.update(trained=evaluate.trained, seconds=round(evaluate.seconds, 1),
                 cpu_seconds=round(evaluate.cpu_seconds, 1), models=len(evaluate.values), spec=evaluate.spec.data,
                 cache_key=evaluate.cache_key)
    found["seed"] = seed
    best = ", ".join(f"{k} {max(v or 0.0 for v in found[k]):.3f}" for k in METHODS)
    print(f"  {name} seed {seed}: best {best} ({evaluate.trained} trained now in {evaluate.seconds:.0f} s, "
          f"{len(evaluate.values)} models cached)", flush=True)
    return found


def run_sequence(name: str, per_seed: list[dict], budget: int) -> dict:
    from evaluators.tasks import get_task
    curves = {k: [best_so_far([v if v is not None else 0.0 for v in found[k]], budget) for found in per_seed]
              for k in METHODS}
    found = compare(curves, budget)
    total, models = space_size()
    return {"space": name, "metric": f"{get_task(name).metric} at short", "task_options": SEQ_SETTINGS[name],
            "task_data": per_seed[0]["spec"], "seeds": len(per_seed), "seed_ids": [f["seed"] for f in per_seed],
            "cache_key": per_seed[0]["cache_key"],
            "search_space": {"genes": {g: list(v) for g, v in SPACE.items()}, "genomes": total, "models": models},
            "methods": {"lab": f"offline engine with GENE_PRIORS, starts from {SEQ_INIT} random draws",
                        "lab_no_priors": "the same without GENE_PRIORS",
                        "rea": f"population {REA_POPULATION}, tournament {REA_SAMPLE}, one-gene mutation",
                        "random": "uniform over the space, distinct models"},
            "failed_evaluations": {k: sum(v is None for f in per_seed for v in f[k]) for k in METHODS},
            "trained": sum(f["trained"] for f in per_seed), "models_evaluated": sum(f["models"] for f in per_seed),
            "evaluation_seconds_this_invocation": sum(f["seconds"] for f in per_seed),
            "evaluation_cpu_seconds_this_invocation": sum(f["cpu_seconds"] for f in per_seed), **found}


# --- the run --------------------------------------------------------------------------------

def verdicts(result: dict) -> dict:
    """The claims, met or missed at p < 0.05: the lab needs fewer evaluations than random search and than REA."""
    tests = result["rank_tests"]
    return {f"fewer_than_{k}": {"p": tests[f"lab_fewer_evaluations_than_{k}"]["p"],
                                "met": tests[f"lab_fewer_evaluations_than_{k}"]["p"] < 0.05}
            for k in ("random", "rea")}


def summary_line(r: dict) -> str:
    needed = r["median_evaluations_to_random_median"]
    tests = r["rank_tests"]
    ps = ", ".join(f"vs {k} p={tests[f'lab_fewer_evaluations_than_{k}']['p']:.3g}"
                   for k in ("random", "rea") if f"lab_fewer_evaluations_than_{k}" in tests)
    return (f"{r['space']}: {r['seeds']} seeds, random median best-of-{r['budget']} "
            f"{r['random_median_best_of_budget']:.3f}; evaluations to reach it (median): "
            + ", ".join(f"{k} {v:g}" for k, v in needed.items())
            + f"; lab fewer (Mann-Whitney, one-sided): {ps}; final gap lab {r['final_gap_at_budget']['lab']:+.3f}")


COLORS = {"lab": "C0", "lab_no_priors": "C1", "rea": "C2", "random": "C3"}   # one colour per method in every panel


def plot(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.4), squeeze=False)
    for ax, result in zip(axes[0], results):
        for name, curve in result["curves"].items():
            x = np.arange(1, len(curve["median"]) + 1)
            color = COLORS.get(name)
            ax.plot(x, curve["median"], label=name, color=color)
            ax.fill_between(x, curve["q25"], curve["q75"], alpha=0.15, color=color)
        ax.axhline(result["random_median_best_of_budget"], color="grey", ls=":", lw=1)
        ax.set_title(f"{result['space']} ({result['seeds']} seeds)")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"best so far: {result['metric']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["nb201", "mqar", "charlm"])
    parser.add_argument("--nb201", type=Path, default=ROOT.parent / "shared/data/nas-benchmarks/nb201_val_accuracy.json")
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the sequence tasks")
    parser.add_argument("--nb201-seeds", type=int, default=200)
    parser.add_argument("--nb201-graph-seeds", type=int, default=NB201_GRAPH_SEEDS,
                        help="NB201 seeds also run through the real graph (~1 min each), which must match the lab's")
    parser.add_argument("--budget", type=int, default=SEQ_BUDGET, help="evaluations per method on the sequence tasks")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_efficiency.json")
    parser.add_argument("--jobs", type=int, default=1, help="seeds evaluated at once (processes, one core each)")
    parser.add_argument("--cached-only", action="store_true",
                        help="evaluate nothing: report the seeds whose evaluations are all cached (a run under way)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/archlab/search_efficiency",
                        help="per-seed evaluations, so an interrupted benchmark resumes")
    parser.add_argument("--cache-key", action="append", default=[], metavar="SPACE=KEY",
                        help="read (and extend) the evaluations cached under KEY rather than under the fingerprint of "
                             "today's task code and spec: for evaluations an earlier version of the code made, where "
                             "the change did not touch data, training or scoring (`--check-cache` shows it did not); "
                             "the key is recorded in the results")
    parser.add_argument("--check-cache", type=int, default=0, metavar="N",
                        help="with --cache-key: evaluate N cached models again with today's code, report the largest "
                             "difference and stop")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = []
    for space in args.spaces:
        if space == "nb201":
            if not args.nb201.is_file():
                print(f"nb201: skipped, no table at {args.nb201} (pass --nb201 FILE)")
                continue
            results.append(run_nb201(args.nb201, args.nb201_seeds, graph_seeds=args.nb201_graph_seeds))
            continue
        keys = dict(item.split("=", 1) for item in args.cache_key)
        if args.check_cache:
            print(check_cache(space, keys.get(space), args.cache, args.check_cache))
            continue
        work = [(space, seed, args.budget, args.cache, args.cached_only, keys.get(space)) for seed in range(args.seeds)]
        if args.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                done = list(pool.map(one_seed, *zip(*work)))
        else:
            done = [one_seed(*w) for w in work]
        complete = [found for found in done if found is not None]
        if len(complete) < len(done):
            print(f"{space}: {len(done) - len(complete)} of {len(done)} seeds not fully cached yet, left out")
        if len(complete) >= 2:
            results.append(run_sequence(space, complete, args.budget))
    for r in results:
        r["claims"] = verdicts(r)
        print(summary_line(r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = {r["space"]: r for r in json.loads(args.out.read_text()).get("results", [])} if args.out.is_file() else {}
    kept.update({r["space"]: r for r in results})
    order = [s for s in ("nb201", "mqar", "charlm") if s in kept] + [s for s in kept if s not in ("nb201", "mqar", "charlm")]
    args.out.write_text(json.dumps({"results": [kept[s] for s in order]}, indent=1))
    if plot([kept[s] for s in order], args.out.with_suffix(".png")):
        print(f"plot: {args.out.with_suffix('.png')}")
    print(f"search_efficiency: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
