"""Is the lab's search better than random search, and by how much?

For each space, at a fixed budget of N evaluations and over several seeds, the lab's search
policy and random search over the same space are run side by side, and the benchmark reports:
best-so-far curves (median and inter-quartile range over seeds), the number of evaluations the
lab needs to reach random search's median best-of-N, and the final gap.

Spaces:
- `nb201`: NAS-Bench-201 as a tabular benchmark (`--nb201 FILE`, the `nb201_val_accuracy.json`
  table; skipped when absent). A genome is the cell's six edge ops, an evaluation a lookup of
  CIFAR-10 validation accuracy. The lab's policy (`agents.search`: tournament parents, Thompson
  sampling from the gene model, recombination with the elite, pairs of changes when stalled) starts
  from `NB201_INIT` random cells (counted in the budget), with no prior (the reading list says
  nothing about NB201's ops). Reference: regularised evolution (population 20, tournament 5,
  one-edge mutation), computed from the same table.
- `mqar`, `charlm`: the shipped sequence tasks, each genome trained in this process at the
  `short` fidelity of the stated task settings (the same training, data and held-out scoring a
  sandbox job runs; no sandbox, so the budget goes to search rather than start-up). The lab
  starts from random search's own first `SEQ_INIT` genomes (counted in the budget; the task's
  hand-written baselines are left out, so every evaluation is of the search space and neither
  method is handed a good start) and then proposes with the offline engine's real planner
  (`OfflineEngine.plan`) on parents chosen by `agents.search.choose_parents`, one candidate per
  round. Random search draws `random_genomes` of the same space. Training seeds are the same for
  both; a genome trained once per seed is not trained again (both methods share the cache).

    python benchmarks/search_efficiency.py --nb201 ../shared/data/nas-benchmarks/nb201_val_accuracy.json
    python benchmarks/search_efficiency.py --spaces mqar charlm --seeds 5 --budget 24

Writes `benchmarks/results/search_efficiency.json` (and `.png` with matplotlib installed) and
prints one summary line per space.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents import search  # noqa: E402
from agents.records import Candidate  # noqa: E402
from evaluators.fitness import Objective  # noqa: E402
from wire.jobs import EvalResult  # noqa: E402

NB201_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")   # the table's op order
NB201_INIT = 8                    # random cells the lab starts from
NB201_PUBLISHED = {"random_median_best_of_100": 90.78, "rea_median_evaluations": 37}
SEQ_INIT = 4                      # random genomes both methods start from (random search's own first draws)
# task settings where random search is not saturated at N = 24 (its median best-of-N well below the ceiling)
SEQ_SETTINGS = {"mqar": {"short_steps": 120, "short_seq_len": 24, "short_num_pairs": 4}, "charlm": {"short_steps": 80}}
ACCURACY = Objective(metric="accuracy")
RANDOM_STREAM = 10_000            # random search's genomes for seed s are random_genomes(N, seed=RANDOM_STREAM + s)


# --- records ------------------------------------------------------------------------------

def record(cid: str, genome: dict, value: float | None, status: str, parent: str | None = None) -> Candidate:
    """A candidate as the run would store it after a `short` evaluation (value None: failed)."""
    ids = {"job_id": f"{cid}-short", "candidate_id": cid}
    result = (EvalResult(status="ok", fidelity="short", metrics={"accuracy": value}, **ids) if value is not None
              else EvalResult(status="error", fidelity="short", message="failed", **ids))
    return Candidate(id=cid, run_id="bench", task="bench", title=cid, motivation="", change="bench", source="",
                     status=status if value is not None else "failed", genome=genome,
                     parent_ids=[parent] if parent else [], evaluations={"short": result})


def best_so_far(values: list[float]) -> list[float]:
    return list(np.maximum.accumulate(np.array(values, dtype=float)))


def reach(curve: list[float], target: float) -> int | None:
    """Evaluations needed to reach `target` (1-based), None when never."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


# --- NAS-Bench-201 ------------------------------------------------------------------------

def nb201_table(path: Path) -> dict[tuple[int, ...], float]:
    data = json.loads(path.read_text())
    return {tuple(a["arch"]): float(a["val_accuracy"]["cifar10"]) for a in data["architectures"]}


def nb201_genome(arch: tuple[int, ...]) -> dict:
    return {f"edge{i}": NB201_OPS[op] for i, op in enumerate(arch)}


def nb201_arch(genome: dict) -> tuple[int, ...]:
    return tuple(NB201_OPS.index(genome[f"edge{i}"]) for i in range(6))


def nb201_singles(genome: dict) -> list[search.Option]:
    return [search.Option({**genome, edge: op}, edge, f"{edge} {genome[edge]} -> {op}")
            for edge in sorted(genome) for op in NB201_OPS if op != genome[edge]]


def nb201_lab(table, budget: int, seed: int) -> list[float]:
    """The lab's policy on the table: the accuracy of each evaluation in order."""
    rng = random.Random(f"lab:{seed}")
    archs = list(table)
    candidates: list[Candidate] = []
    seen: set[tuple] = set()
    values: list[float] = []

    def evaluate(genome: dict, status: str, parent: str | None) -> None:
        arch = nb201_arch(genome)
        seen.add(arch)
        values.append(table[arch])
        candidates.append(record(f"c{len(candidates):03d}", genome, table[arch], status, parent))

    while len(values) < min(NB201_INIT, budget):
        arch = rng.choice(archs)
        if arch not in seen:
            evaluate(nb201_genome(arch), "reference", None)
    step = 0
    while len(values) < budget:
        step += 1
        parent = search.choose_parents(candidates, ACCURACY, 1, f"{seed}:select:{step}")[0]
        genome = dict(parent.genome or {})
        singles = nb201_singles(genome)
        elite = search.elite_of(candidates, ACCURACY, besides=parent.id)
        fresh = [o for o in singles if nb201_arch(o.genome) not in seen]
        pairs = not fresh or search.stalled(parent, candidates, ACCURACY)
        options = [o for o in search.compose(genome, singles, (elite.id, elite.genome) if elite else None, pairs)
                   if nb201_arch(o.genome) not in seen]
        if not options:                               # this parent's neighbourhood is spent: a random cell
            arch = rng.choice([a for a in archs if a not in seen])
            evaluate(nb201_genome(arch), "reference", None)
            continue
        model = search.GeneModel.fit(search.observations(candidates, ACCURACY), extra=[o.genome for o in options])
        _, choice = search.rank_options(options, model, random.Random(f"{seed}:plan:{step}"))[0]
        evaluate(choice.genome, "evaluated", parent.id)
    return values


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


def run_nb201(path: Path, seeds: int, budget: int) -> dict:
    table = nb201_table(path)
    random_best = [max(nb201_random(table, 100, s)) for s in range(seeds)]
    target = statistics.median(random_best)
    horizon = max(budget, 300)
    methods = {"lab": nb201_lab, "rea": nb201_rea}
    curves = {name: [best_so_far(fn(table, horizon, s)) for s in range(seeds)] for name, fn in methods.items()}
    curves["random"] = [best_so_far(nb201_random(table, horizon, s)) for s in range(seeds)]
    needed = {name: [reach(c, target) or horizon + 1 for c in runs] for name, runs in curves.items()}
    return {"space": "nb201", "metric": "cifar10 validation accuracy", "seeds": seeds, "budget": 100,
            "random_median_best_of_budget": target, "published": NB201_PUBLISHED,
            "median_evaluations_to_random_median": {k: statistics.median(v) for k, v in needed.items()},
            "iqr_evaluations_to_random_median": {k: list(np.percentile(v, [25, 75])) for k, v in needed.items()},
            "final_gap_at_budget": {k: statistics.median(c[99] for c in runs) - target for k, runs in curves.items()},
            "curves": summarise(curves, 100)}


def summarise(curves: dict[str, list[list[float]]], length: int) -> dict:
    out = {}
    for name, runs in curves.items():
        grid = np.array([c[:length] for c in runs])
        out[name] = {"median": list(np.median(grid, 0)), "q25": list(np.percentile(grid, 25, 0)),
                     "q75": list(np.percentile(grid, 75, 0))}
    return out


# --- sequence tasks -------------------------------------------------------------------------

class Trainer:
    """Trains a genome at the task's `short` fidelity in this process; one result per (genome, seed)."""

    def __init__(self, task_name: str, options: dict):
        import torch
        from evaluators.tasks import get_task
        torch.set_num_threads(1)
        self.task = get_task(task_name)
        self.spec = self.task.default_spec(**options)
        self.cache: dict[tuple[str, int], float | None] = {}
        self.trained = 0
        self.seconds = 0.0
        self.directory = Path(tempfile.mkdtemp(prefix="search-efficiency-"))

    def __call__(self, genome: dict, seed: int) -> float | None:
        from agents.offline.blocks import render, validate
        key = (json.dumps(validate(genome), sort_keys=True), seed)
        if key not in self.cache:
            started = time.perf_counter()
            self.cache[key] = self._train(render(genome), seed)
            self.seconds += time.perf_counter() - started
            self.trained += 1
        return self.cache[key]

    def _train(self, source: str, seed: int) -> float | None:
        import torch
        from evaluators import fidelities
        path = self.directory / f"candidate_{self.trained}.py"
        path.write_text(source)
        device = torch.device("cpu")
        try:
            module = fidelities.load_candidate(path)
            fidelities.check(self.task, self.spec, fidelities.build(module, self.spec, seed), device)
            instance = self.spec.at("short")
            model = fidelities.build(module, instance, seed)
            fidelities.train(self.task, instance, model, self.spec.budgets["short"], seed, device)
            inputs, targets = self.task.heldout(instance)
            predictions = fidelities.heldout_predictions(self.task, model, inputs)
            return float(self.task.score(instance, predictions.astype(np.float64), targets)[self.task.metric])
        except (fidelities.ContractViolation, fidelities.Diverged, ValueError, RuntimeError):
            return None


def seq_lab(trainer: Trainer, budget: int, seed: int) -> list[float]:
    from agents.engine import PlanContext
    from agents.offline.engine import NoProposal, OfflineEngine, genome_hash
    from agents.offline.blocks import random_genomes
    engine = OfflineEngine(seed, ACCURACY)
    candidates: list[Candidate] = []
    tried: set[str] = set()
    values: list[float] = []

    def evaluate(genome: dict, status: str, parent: str | None, cid: str) -> None:
        value = trainer(genome, seed)
        tried.add(genome_hash(genome))
        values.append(value if value is not None else 0.0)
        candidates.append(record(cid, genome, value, status, parent))

    for i, genome in enumerate(random_genomes(SEQ_INIT, seed=RANDOM_STREAM + seed)):
        evaluate(genome, "reference", None, f"r-{i + 1:02d}")
    round = 0
    while len(values) < budget:
        round += 1
        parents = search.choose_parents(candidates, ACCURACY, 1, f"{seed}:select:{round}")
        chosen = {p.id for p in parents}
        order = parents + [m.candidate for m in search.population(candidates, ACCURACY) if m.candidate.id not in chosen]
        for parent in order:
            try:
                plan = engine.plan(PlanContext(spec=trainer.spec, round=round, parent=parent, candidates=candidates,
                                               tried=tried, objective=ACCURACY))
            except NoProposal:
                continue
            evaluate(plan.genome or {}, "evaluated", parent.id, f"c{round:03d}")
            break
        else:
            break
    return values


def seq_random(trainer: Trainer, budget: int, seed: int) -> list[float]:
    from agents.offline.blocks import random_genomes
    return [v if (v := trainer(g, seed)) is not None else 0.0
            for g in random_genomes(budget, seed=RANDOM_STREAM + seed)]


def one_seed(name: str, seed: int, budget: int, cache: Path) -> dict:
    """Random search and the lab on one seed of a sequence task; kept in `cache` so an interrupted run resumes."""
    path = cache / f"{name}-{json.dumps(SEQ_SETTINGS[name], sort_keys=True)}-n{budget}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    trainer = Trainer(name, SEQ_SETTINGS[name])
    found = {"random": seq_random(trainer, budget, seed), "lab": seq_lab(trainer, budget, seed),
             "trained": trainer.trained, "seconds": round(trainer.seconds, 1)}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found))
    print(f"  {name} seed {seed}: random best {max(found['random']):.3f}, lab best {max(found['lab']):.3f} "
          f"({trainer.trained} trained in {trainer.seconds:.0f} s)", flush=True)
    return found


def run_sequence(name: str, per_seed: list[dict], budget: int) -> dict:
    curves = {k: [best_so_far(found[k]) for found in per_seed] for k in ("lab", "random")}
    target = statistics.median(c[-1] for c in curves["random"])
    needed = {k: [reach(c, target) or budget + 1 for c in runs] for k, runs in curves.items()}
    from evaluators.tasks import get_task
    return {"space": name, "metric": f"{get_task(name).metric} at short", "task_options": SEQ_SETTINGS[name],
            "seeds": len(per_seed), "budget": budget, "random_median_best_of_budget": target,
            "median_evaluations_to_random_median": {k: statistics.median(v) for k, v in needed.items()},
            "iqr_evaluations_to_random_median": {k: list(np.percentile(v, [25, 75])) for k, v in needed.items()},
            "final_gap_at_budget": {k: statistics.median(c[-1] for c in runs) - target for k, runs in curves.items()},
            "trained": sum(f["trained"] for f in per_seed), "train_seconds": sum(f["seconds"] for f in per_seed),
            "curves": summarise(curves, budget)}


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
            ax.plot(x, curve["median"], label=name)
            ax.fill_between(x, curve["q25"], curve["q75"], alpha=0.2)
        ax.axhline(result["random_median_best_of_budget"], color="grey", ls=":", lw=1)
        ax.set_title(f"{result['space']} ({result['seeds']} seeds)")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"best so far: {result['metric']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["nb201", "mqar", "charlm"])
    parser.add_argument("--nb201", type=Path, default=ROOT.parent / "shared/data/nas-benchmarks/nb201_val_accuracy.json")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--nb201-seeds", type=int, default=200)
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_efficiency.json")
    parser.add_argument("--jobs", type=int, default=1, help="seeds of the sequence tasks trained at once (processes)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/archlab/search_efficiency",
                        help="per-seed results, so an interrupted benchmark resumes")
    args = parser.parse_args(argv)
    results = []
    sequences = [space for space in args.spaces if space != "nb201"]
    work = [(space, seed, args.budget, args.cache) for space in sequences for seed in range(args.seeds)]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(one_seed, *zip(*work))) if work else []
    else:
        done = [one_seed(*w) for w in work]
    for space in args.spaces:
        if space == "nb201":
            if not args.nb201.is_file():
                print(f"nb201: skipped, no table at {args.nb201} (pass --nb201 FILE)")
                continue
            results.append(run_nb201(args.nb201, args.nb201_seeds, 100))
        else:
            results.append(run_sequence(space, [f for w, f in zip(work, done) if w[0] == space], args.budget))
    for r in results:
        needed = r["median_evaluations_to_random_median"]
        print(f"{r['space']}: random median best-of-{r['budget']} {r['random_median_best_of_budget']:.3f}; "
              f"evaluations to reach it (median): " + ", ".join(f"{k} {v:g}" for k, v in needed.items())
              + f"; target <= {r['budget'] / 2:g}; final gap lab {r['final_gap_at_budget']['lab']:+.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.is_file() and set(args.spaces) != {"nb201", "mqar", "charlm"}:
        kept = {r["space"]: r for r in json.loads(args.out.read_text()).get("results", [])}
        kept.update({r["space"]: r for r in results})
        results = list(kept.values())
    args.out.write_text(json.dumps({"results": results}, indent=1))
    if plot(results, args.out.with_suffix(".png")):
        print(f"plot: {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
