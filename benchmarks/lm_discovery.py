"""The discovery study on `lm`: does the lab find better language-model blocks than random search and
regularised evolution at equal evaluation budgets, and does its best keep the lead one rung up?

Part 1, search at the smallest rung. On the `lm` task at `scale` 0 (the `short` fidelity trains
the ladder's bottom rung: d_model 64, 2 layers, 2 heads, sequences of 64 bytes, ~0.2M training
tokens; metric bits per byte on held-out text, lower is better), the lab's offline engine,
random search and regularised evolution (REA) each get the same budget of N evaluations per
seed, over >= 10 seeds. The machinery is `benchmarks/search_efficiency.py`'s, imported, not
copied: its genome evaluations through the harness in a forked child (`Evaluations`, cached
per seed), `seq_random`, `seq_rea`, the lab driver `seq_lab` (the offline engine's planner on
parents from `agents.search.choose_parents`), `compare` (best-so-far curves, evaluations to
reach random search's median best-of-N, one-sided Mann-Whitney U tests via `rank_test`),
`summarise` and `plot`. Two things differ:
- the space, `lm_space`: the block catalogue's genes as search_efficiency's `SPACE` has them,
  with width, depth and heads fixed at the rung's (the lm task sets them through `spec.data`,
  so a genome's own d_model / n_layers / n_heads would not change the model). It is set on
  that module (`se.SPACE`) in every process that evaluates, before anything is drawn;
- the direction: those functions maximise, so they see minus bits per byte; everything written
  out is converted back to bits per byte (lower is better).

Part 2, confirmation one rung up. The best architecture the lab found (its lowest bits per
byte at `short` over all seeds) and the transformer baseline (`evaluators/baselines/
lm_transformer.py`) are trained at `full`, the next rung (d_model 96, 3 layers, 3 heads), with
>= 3 training seeds each; the verdict is the lab's own rule (`agents.seeds.verdict`: Welch's
95% interval of the difference of means) plus a one-sided Mann-Whitney U. The transformer is
also trained at `short` once per seed, so the search's results can be read against it.

Sizing (2 cores, `--jobs 2`), what the defaults choose: N = 20 evaluations per method (search_efficiency's
budget, to which its REA population of 8 and tournament of 3 are scaled), 12 seeds, 3 confirmation seeds.
Measured on the shared 2-core machine: a rung-0 `short` evaluation takes ~5-9 s of wall time, a rung-1 `full`
one ~70 s. Random search's first draws are shared with REA's population and the lab's start, and a model is
trained once per seed, so a seed costs ~40 trainings (~5 min on one core); 12 seeds on 2 processes ~30 min,
plus 12 transformer runs at short and 6 runs at full (~8 min): about 40-60 minutes, depending on the load.

    nice -n 19 python benchmarks/lm_discovery.py --jobs 2
    python benchmarks/lm_discovery.py --seeds 2 --budget 6 --confirm-seeds 1    # smoke test (~5 min)

Cached per seed under ~/.cache/archlab/lm_discovery (`--cache`; the key includes the task's
spec and source, so a changed task is evaluated afresh), so an interrupted study resumes.
Writes `benchmarks/results/lm_discovery.json` (and `.png` with matplotlib) and prints one
summary line. What it does not do: run the graph itself (search_efficiency checks on NB201
that the driver makes the graph's evaluations), or tune the rung's training recipe per family.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import search_efficiency as se  # noqa: E402

TASK = "lm"
BUDGET, SEEDS, CONFIRM_SEEDS = 20, 12, 3
METHODS = ("lab", "rea", "random")
LIMITS = {"wall_seconds": 1800, "memory_mb": 4096, "cpus": 1}
RUNG_GENES = ("d_model", "n_layers", "n_heads")


def options_of(scale: int) -> dict:
    return {"scale": scale}


def lm_space(spec) -> dict[str, tuple]:
    """search_efficiency's gene values, with width, depth and heads the `short` rung's (the model's real ones)."""
    rung = spec.at("short").data
    return {**se.SPACE, **{gene: (int(rung[gene]),) for gene in RUNG_GENES}}


class Evaluations(se.Evaluations):
    """search_efficiency's cached evaluations, seen as minus bits per byte (its search functions maximise); the
    cache keeps bits per byte. Sets `se.SPACE` to this rung's space, so its draws and mutations stay in it."""

    def __init__(self, options: dict, seed: int, cache: Path, cached_only: bool = False):
        from wire.jobs import Limits
        super().__init__(TASK, options, seed, cache, cached_only)
        self.limits = Limits(**LIMITS)
        se.SPACE = lm_space(self.spec)

    def __call__(self, genome: dict) -> float | None:
        value = super().__call__(genome)
        return None if value is None else -value


def evaluate_source(spec, source: str, fidelity: str, seed: int) -> float | None:
    """Bits per byte of one module at `fidelity`, through the harness in a forked child (as `Evaluations` does)."""
    from sandbox.process import ProcessSandbox
    from evaluators.harness import evaluate
    from wire.jobs import EvalJob, Limits
    job = EvalJob(job_id=f"confirm-{fidelity}-{seed}", candidate_id="confirm", source=source, task=spec,
                  fidelity=fidelity, limits=Limits(**LIMITS), seed=seed)
    with tempfile.TemporaryDirectory(prefix="lm-discovery-") as tmp:
        result = evaluate(ProcessSandbox(), job, Path(tmp))
    if result.status == "sandbox_error":
        raise RuntimeError(f"the sandbox could not run a job: {result.message}")
    return result.metrics.get("bits_per_byte") if result.status == "ok" else None


class SourceCache:
    """Values of whole modules (the baseline, the confirmed genome) per (name, fidelity, seed), on disk."""

    def __init__(self, spec, cache: Path):
        from evaluators.tasks import get_task
        self.spec = spec
        self.path = cache / f"sources-{se.fingerprint(get_task(TASK), spec)}.json"
        self.values = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def __call__(self, name: str, source: str, fidelity: str, seed: int) -> float | None:
        import hashlib
        key = f"{name}:{hashlib.sha256(source.encode()).hexdigest()[:12]}:{fidelity}:{seed}"
        if key not in self.values:
            self.values[key] = evaluate_source(self.spec, source, fidelity, seed)
            self.values = {**(json.loads(self.path.read_text()) if self.path.is_file() else {}), **self.values}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.values))
            os.replace(tmp, self.path)
        return self.values[key]


def one_seed(seed: int, budget: int, scale: int, cache: Path, cached_only: bool = False) -> dict | None:
    """Every method on one seed (values in bits per byte, None: failed), and the transformer at short."""
    from evaluators.baselines import lm_baselines
    evaluate = Evaluations(options_of(scale), seed, cache, cached_only)
    try:
        found = {"random": se.seq_random(evaluate, budget, seed), "rea": se.seq_rea(evaluate, budget, seed),
                 "lab": se.seq_lab(evaluate, budget, seed)}
    except se.NotCached:
        return None
    found = {k: [None if v is None else -v for v in values] for k, values in found.items()}
    if cached_only:
        transformer = None
    else:
        transformer = SourceCache(evaluate.spec, cache)("lm_transformer", lm_baselines()["lm_transformer"][1],
                                                        "short", seed)
    best = ", ".join(f"{k} {min((v for v in found[k] if v is not None), default=float('nan')):.3f}" for k in METHODS)
    print(f"  lm seed {seed}: best bits/byte {best}; transformer {transformer if transformer is None else round(transformer, 3)} "
          f"({evaluate.trained} trained now in {evaluate.seconds:.0f} s, {len(evaluate.values)} models cached)", flush=True)
    return {**found, "seed": seed, "transformer_short": transformer, "trained": evaluate.trained,
            "seconds": round(evaluate.seconds, 1), "cpu_seconds": round(evaluate.cpu_seconds, 1),
            "models": len(evaluate.values), "spec": evaluate.spec.at("short").data}


def lab_best(per_seed: list[dict], budget: int, scale: int, cache: Path) -> tuple[dict, float]:
    """The genome of the lab's lowest bits per byte at short over all seeds (the lab re-run on the cached values:
    it is deterministic for its seed, so it makes the same evaluations)."""
    best: tuple[float, dict] | None = None
    for found in per_seed:
        evaluate = Evaluations(options_of(scale), found["seed"], cache, cached_only=True)
        for genome, value in _lab_genomes(evaluate, budget, found["seed"]):
            if value is not None and (best is None or value < best[0]):
                best = (value, se.canonical(genome))
    if best is None:
        raise RuntimeError("the lab evaluated nothing successfully")
    return best[1], best[0]


def _lab_genomes(evaluate: Evaluations, budget: int, seed: int) -> list[tuple[dict, float | None]]:
    """(genome, bits per byte) of each of the lab's evaluations on `seed`, from the cache."""
    out: list[tuple[dict, float | None]] = []

    class Recording:
        spec, task = evaluate.spec, evaluate.task

        def __call__(self, genome):
            value = evaluate(genome)
            out.append((genome, None if value is None else -value))
            return value
    se.seq_lab(Recording(), budget, seed)
    return out


def confirm(genome: dict, spec, seeds: int, cache: Path) -> dict:
    """The lab's best and the transformer at `full` (one rung up), `seeds` training seeds each."""
    from scipy import stats as scipy_stats

    from agents import seeds as seeds_mod
    from evaluators.baselines import lm_baselines
    values = SourceCache(spec, cache)
    sources = {"lab_best": se.render(genome, title="The lab's best block at the bottom rung."),
               "lm_transformer": lm_baselines()["lm_transformer"][1]}
    found = {name: [values(name, source, "full", s) for s in range(seeds)] for name, source in sources.items()}
    ok = {k: [v for v in vs if v is not None] for k, vs in found.items()}
    out = {"rung": spec.at("full").data, "genome": genome, "bits_per_byte": found,
           "mean": {k: statistics.fmean(v) if v else None for k, v in ok.items()}}
    if min(len(v) for v in ok.values()) >= 2:
        judged = seeds_mod.verdict(ok["lab_best"], ok["lm_transformer"], higher_is_better=False)
        test = scipy_stats.mannwhitneyu(ok["lab_best"], ok["lm_transformer"], alternative="less")
        out.update(verdict=judged, mann_whitney_less={"U": float(test.statistic), "p": float(test.pvalue)},
                   keeps_lead=bool(judged["better"]))
    return out


def to_bits(result: dict) -> dict:
    """`se.compare`'s figures on minus bits per byte, back in bits per byte (lower is better)."""
    out = dict(result)
    out["random_median_best_of_budget"] = -result["random_median_best_of_budget"]
    out["best_of_budget"] = {k: [-v for v in vs] for k, vs in result["best_of_budget"].items()}
    out["final_gap_at_budget"] = {k: -v for k, v in result["final_gap_at_budget"].items()}
    out["curves"] = {k: {"median": [-v for v in c["median"]], "q25": [-v for v in c["q75"]],
                         "q75": [-v for v in c["q25"]]} for k, c in result["curves"].items()}
    tests = {}
    for name, test in result["rank_tests"].items():
        tests[name.replace("higher_best", "lower_best")] = test     # "higher -score" is "lower bits per byte"
    out["rank_tests"] = tests
    return out


def summary_line(r: dict) -> str:
    tests = r["rank_tests"]
    ps = ", ".join(f"vs {k} p={tests[f'lab_fewer_evaluations_than_{k}']['p']:.3g}" for k in ("random", "rea"))
    best = ", ".join(f"vs {k} p={tests[f'lab_lower_best_than_{k}']['p']:.3g}" for k in ("random", "rea"))
    line = (f"lm_discovery: {r['seeds']} seeds, N={r['budget']}; random median best-of-N {r['random_median_best_of_budget']:.3f} "
            f"bits/byte; median best-of-N " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in r['best_of_budget'].items())
            + f"; lab fewer evaluations (one-sided Mann-Whitney): {ps}; lab lower best: {best}")
    c = r.get("confirmation")
    if c and c.get("verdict"):
        line += (f"; one rung up: lab best {c['mean']['lab_best']:.3f} vs transformer {c['mean']['lm_transformer']:.3f} "
                 f"bits/byte, {c['verdict']['verdict']} ({'keeps' if c['keeps_lead'] else 'does not keep'} a lead)")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--budget", type=int, default=BUDGET, help="evaluations per method and seed (N)")
    parser.add_argument("--scale", type=int, default=0, help="the lm ladder's rung searched (full = one up)")
    parser.add_argument("--confirm-seeds", type=int, default=CONFIRM_SEEDS)
    parser.add_argument("--jobs", type=int, default=1, help="seeds evaluated at once (processes, one core each)")
    parser.add_argument("--cached-only", action="store_true", help="evaluate nothing: report the cached seeds")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/archlab/lm_discovery")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/lm_discovery.json")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    started = time.perf_counter()
    work = [(seed, args.budget, args.scale, args.cache, args.cached_only) for seed in range(args.seeds)]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(one_seed, *zip(*work)))
    else:
        done = [one_seed(*w) for w in work]
    per_seed = [found for found in done if found is not None]
    if len(per_seed) < 2:
        print(f"lm_discovery: {len(per_seed)} seeds complete, need 2")
        return 1
    # the search functions maximise: compare on minus bits per byte (a failed evaluation counts as the worst)
    curves = {k: [se.best_so_far([-v if v is not None else -1e9 for v in found[k]], args.budget) for found in per_seed]
              for k in METHODS}
    result = to_bits(se.compare(curves, args.budget))
    spec = Evaluations(options_of(args.scale), 0, args.cache, cached_only=True).spec
    genome, value = lab_best(per_seed, args.budget, args.scale, args.cache)
    confirmation = confirm(genome, spec, args.confirm_seeds, args.cache) if not args.cached_only else None
    transformer = [f["transformer_short"] for f in per_seed if f["transformer_short"] is not None]
    result.update(space="lm", metric="bits per byte at short (lower is better)", task_options=options_of(args.scale),
                  rung=per_seed[0]["spec"], seeds=len(per_seed), seed_ids=[f["seed"] for f in per_seed],
                  search_space={"genes": {g: list(v) for g, v in lm_space(spec).items()}},
                  methods={"lab": f"offline engine with GENE_PRIORS, starts from {se.SEQ_INIT} random draws",
                           "rea": f"population {se.REA_POPULATION}, tournament {se.REA_SAMPLE}, one-gene mutation",
                           "random": "uniform over the space, distinct models"},
                  failed_evaluations={k: sum(v is None for f in per_seed for v in f[k]) for k in METHODS},
                  transformer_short={"median": statistics.median(transformer) if transformer else None,
                                     "values": transformer},
                  lab_best_at_short={"genome": genome, "bits_per_byte": value},
                  confirmation=confirmation,
                  trained_this_invocation=sum(f["trained"] for f in per_seed),
                  evaluation_cpu_seconds_this_invocation=sum(f["cpu_seconds"] for f in per_seed),
                  seconds=round(time.perf_counter() - started, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    if se.plot([result], args.out.with_suffix(".png")):
        print(f"plot: {args.out.with_suffix('.png')}")
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
