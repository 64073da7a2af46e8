"""How few downstream items keep the ranking of a pool of language models (issue 23)?

On a pool of scored candidates (`--pool PATH`, an .npz holding `Y` [models, items] expected accuracy,
`C` [models, items] top choice right, `scenarios` [items] int, `scenario_names`, `models` (ids) and
`item_tokens` [items], the forward tokens the sandbox spends per item), for each item-selection method
of `evaluators.item_selection` (uniform, anchor_points, irt) and each subset size n in `SIZES` ("all" is
the full suite), over R seeds (`--repeats`, default 20):
- cross-validated estimates (`item_selection.cross_validated`, 5 folds: a model never helps choose the
  items it is scored on); Kendall tau with the full-suite ranking (median and 90% interval over seeds)
  and the mean absolute error of the estimated full-suite score;
- the smallest n whose median tau >= 0.9, and how many times fewer items than the full suite that is;
- a paired comparison of each method with uniform at every n (the same seeds, hence the same folds):
  one-sided Wilcoxon signed-rank tests on the error and on tau. A method beats uniform at n when its
  error is lower beyond chance (p < 0.05) and its tau is not lower beyond chance; otherwise the
  difference is reported as it is ("not distinguishable" or "worse");
- DIoR-style reliability at n = 100 (`item_selection.reliability`: subsets re-drawn over bootstraps of
  the pool, how often pairwise decisions and the top-5 stand, the estimates' standard error);
- evaluation compute: forward tokens per candidate on the full suite and on each method's anchors at
  its smallest n reaching tau >= 0.9 (from `item_tokens`).
Targets (issue 23): >= 10x fewer items at tau >= 0.9; anchors beat uniform at every size; full-score
error <= 0.02 at 100 items. Each is printed MET or MISSED with its number, per method.

Without `--pool`, the pool is built by `benchmarks.suite_pool.build_pool(path)` (the downstream suite run
on trained candidates, cached at `--pool-cache`); `--synthetic` draws a pool from a 2PL model instead
(40 models, 6 scenarios x 500 items; for trying the study, not for its conclusions).

    python benchmarks/efficient_benchmarking.py --pool runs/suite_pool.npz
    python benchmarks/efficient_benchmarking.py --synthetic --repeats 5      # smoke test (~1 min)

Writes `benchmarks/results/efficient_benchmarking.json` (entirely) and prints one summary line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators import item_selection as sel  # noqa: E402

METHODS = ("uniform", "anchor_points", "irt")
SIZES = (6, 12, 24, 50, 100, 200, 400, 800, "all")
TAU_TARGET = 0.9
FEWER_TARGET = 10.0      # times fewer items than the full suite at tau >= TAU_TARGET
ERROR_TARGET = 0.02      # mean absolute error of the full-suite score at ERROR_AT items
ERROR_AT = 100
SIGNIFICANCE = 0.05
FOLDS = 5
TOP_K = 5
OUT = ROOT / "benchmarks" / "results" / "efficient_benchmarking.json"


@dataclass(frozen=True)
class Pool:
    Y: np.ndarray            # [models, items] expected accuracy
    C: np.ndarray            # [models, items] top choice right
    scenarios: np.ndarray    # [items] scenario index
    scenario_names: list[str]
    models: list[str]
    item_tokens: np.ndarray  # [items] forward tokens per item

    def save(self, path: Path) -> None:
        np.savez_compressed(path, Y=self.Y, C=self.C, scenarios=self.scenarios,
                            scenario_names=np.asarray(self.scenario_names), models=np.asarray(self.models),
                            item_tokens=self.item_tokens)


def load_pool(path: Path) -> Pool:
    with np.load(path, allow_pickle=False) as data:
        return Pool(Y=data["Y"].astype(np.float64), C=data["C"].astype(np.int8),
                    scenarios=data["scenarios"].astype(int), scenario_names=[str(s) for s in data["scenario_names"]],
                    models=[str(m) for m in data["models"]], item_tokens=data["item_tokens"].astype(np.int64))


def build_or_load(args) -> Pool:
    if args.synthetic:
        return synthetic_pool(seed=args.seed)
    if args.pool is not None:
        return load_pool(args.pool)
    try:
        from benchmarks import suite_pool  # the lead's module: runs the suite on trained candidates
    except ImportError as error:
        raise SystemExit(f"no --pool given and benchmarks/suite_pool.py cannot be imported ({error}); "
                         "pass --pool PATH or --synthetic") from error
    if not args.pool_cache.exists():
        suite_pool.build_pool(args.pool_cache)
    return load_pool(args.pool_cache)


def synthetic_pool(n_models: int = 40, n_scenarios: int = 6, items_per_scenario: int = 500, choices: int = 4,
                   seed: int = 0, item_noise: float = 0.5) -> Pool:
    """A pool drawn from a 2PL model: candidates of similar skill (a general ability plus a per-scenario
    skill, both narrow, as in one search's pool); items that differ in discrimination (many near-flat,
    some sharp) and difficulty; `item_noise` (logit sd) for what a model gets right or wrong item by item
    beyond its ability; expected accuracy rises from chance (1 / choices) to 1; the top choice is right
    with that probability."""
    rng = np.random.default_rng(seed)
    ability = 0.4 * rng.normal(size=(n_models, 1)) + 0.3 * rng.normal(size=(n_models, n_scenarios))
    scenarios = np.repeat(np.arange(n_scenarios), items_per_scenario)
    discrimination = rng.lognormal(mean=-0.3, sigma=0.9, size=len(scenarios))
    difficulty = rng.normal(loc=0.3, scale=1.2, size=len(scenarios))
    logit = discrimination * (ability[:, scenarios] - difficulty) + item_noise * rng.normal(size=(n_models, len(scenarios)))
    chance = 1.0 / choices
    Y = chance + (1 - chance) / (1 + np.exp(-logit))
    C = (rng.random(Y.shape) < Y).astype(np.int8)
    return Pool(Y=Y, C=C, scenarios=scenarios, scenario_names=[f"scenario{s}" for s in range(n_scenarios)],
                models=[f"model{m}" for m in range(n_models)],
                item_tokens=rng.integers(16, 160, size=len(scenarios)))


# ---- the study ------------------------------------------------------------------------------------

def size_value(size, n_items: int) -> int:
    return n_items if size == "all" else min(int(size), n_items)


def run_cell(pool: Pool, method: str, n: int, repeats: int, truth: np.ndarray) -> dict:
    """Tau and error over seeds for one method at one size (seed r uses the same folds for every method)."""
    taus, errors = [], []
    for seed in range(repeats):
        estimates = sel.cross_validated(method, pool.Y, pool.C, pool.scenarios, n, folds=FOLDS, seed=seed)
        taus.append(sel.kendall_tau(estimates, truth))
        errors.append(float(np.abs(estimates - truth).mean()))
    return {"n": n, "tau": taus, "error": errors, **describe(taus, "tau"), **describe(errors, "error")}


def describe(values: list[float], name: str) -> dict:
    low, median, high = np.quantile(values, [0.05, 0.5, 0.95])
    return {f"{name}_median": float(median), f"{name}_interval90": [float(low), float(high)]}


def paired_comparison(method_cell: dict, uniform_cell: dict) -> dict:
    """Method against uniform over the same seeds: mean paired differences and one-sided Wilcoxon tests."""
    tau_gain = np.subtract(method_cell["tau"], uniform_cell["tau"])
    error_cut = np.subtract(uniform_cell["error"], method_cell["error"])
    error_p_better, error_p_worse = one_sided(error_cut)
    tau_p_better, tau_p_worse = one_sided(tau_gain)
    error_verdict = verdict(error_p_better, error_p_worse)
    tau_verdict = verdict(tau_p_better, tau_p_worse)
    return {"tau_gain_mean": float(tau_gain.mean()), "error_cut_mean": float(error_cut.mean()),
            "error_cut_relative": float(error_cut.mean() / max(np.mean(uniform_cell["error"]), 1e-12)),
            "p_error_lower": error_p_better, "p_tau_higher": tau_p_better,
            "error": error_verdict, "tau": tau_verdict,
            "beats_uniform": error_verdict == "better" and tau_verdict != "worse"}


def one_sided(differences: np.ndarray) -> tuple[float, float]:
    """p-values of "differences > 0" and "differences < 0"; 1.0 both ways when all are zero."""
    if not np.any(differences):
        return 1.0, 1.0
    greater = float(stats.wilcoxon(differences, alternative="greater", zero_method="zsplit").pvalue)
    less = float(stats.wilcoxon(differences, alternative="less", zero_method="zsplit").pvalue)
    return greater, less


def verdict(p_better: float, p_worse: float) -> str:
    if p_better < SIGNIFICANCE:
        return "better"
    if p_worse < SIGNIFICANCE:
        return "worse"
    return "not distinguishable"


def smallest_size(cells: dict) -> int | None:
    reaching = [cell["n"] for cell in cells.values() if cell["tau_median"] >= TAU_TARGET]
    return min(reaching) if reaching else None


def anchor_tokens(pool: Pool, method: str, n: int, repeats: int) -> float:
    """Mean forward tokens per candidate on the anchors the method picks from the whole pool."""
    totals = [pool.item_tokens[list(sel.select(method, pool.Y, pool.C, pool.scenarios, n, seed).items)].sum()
              for seed in range(repeats)]
    return float(np.mean(totals))


def study(pool: Pool, methods=METHODS, sizes=SIZES, repeats: int = 20, draws: int = 20, log=print) -> dict:
    n_items = pool.Y.shape[1]
    truth = sel.full_score(pool.Y, pool.scenarios)
    sizes_n = sorted({size_value(size, n_items) for size in sizes})
    cells = {}
    for method in methods:
        started = time.perf_counter()
        cells[method] = {n: run_cell(pool, method, n, repeats, truth) for n in sizes_n}
        log(f"  {method}: {time.perf_counter() - started:.0f} s")
    full_tokens = float(pool.item_tokens.sum())
    per_method = {}
    for method in methods:
        chosen = smallest_size(cells[method])
        at = min(sizes_n, key=lambda n: abs(n - ERROR_AT))
        entry = {
            "cells": [cells[method][n] for n in sizes_n],
            "smallest_n_tau_0.9": chosen,
            "times_fewer_items": (n_items / chosen) if chosen else None,
            "error_at_100": cells[method][at]["error_median"],
            "error_at_n": at,  # the size nearest ERROR_AT among those studied
            "reliability_at_100": sel.reliability(method, pool.Y, pool.C, pool.scenarios, at, draws=draws,
                                                  k=TOP_K).to_dict(),
            "tokens_per_candidate": anchor_tokens(pool, method, chosen, repeats) if chosen else None,
        }
        if method != "uniform" and "uniform" in methods:
            comparisons = {n: paired_comparison(cells[method][n], cells["uniform"][n]) for n in sizes_n if n < n_items}
            entry["against_uniform"] = [{"n": n, **comparison} for n, comparison in comparisons.items()]
            entry["beats_uniform_at_every_size"] = all(c["beats_uniform"] for c in comparisons.values())
        entry["targets"] = targets(entry)
        per_method[method] = entry
    return {"pool": {"models": len(pool.models), "items": n_items, "scenarios": pool.scenario_names,
                     "full_tokens_per_candidate": full_tokens},
            "settings": {"repeats": repeats, "folds": FOLDS, "draws": draws, "sizes": sizes_n, "top_k": TOP_K,
                         "tau_target": TAU_TARGET, "error_at": ERROR_AT, "significance": SIGNIFICANCE},
            "methods": per_method}


def targets(entry: dict) -> dict:
    fewer = entry["times_fewer_items"]
    result = {
        "fewer_items": {"value": fewer, "target": FEWER_TARGET, "met": fewer is not None and fewer >= FEWER_TARGET},
        "error_at_100": {"value": entry["error_at_100"], "target": ERROR_TARGET,
                         "met": entry["error_at_100"] <= ERROR_TARGET},
    }
    if "beats_uniform_at_every_size" in entry:
        sizes_beaten = sum(c["beats_uniform"] for c in entry["against_uniform"])
        result["beats_uniform"] = {"value": f"{sizes_beaten}/{len(entry['against_uniform'])} sizes",
                                   "met": entry["beats_uniform_at_every_size"]}
    return result


def report(result: dict) -> list[str]:
    lines = []
    for method, entry in result["methods"].items():
        for name, target in entry["targets"].items():
            value = target["value"]
            shown = f"{value:.3g}" if isinstance(value, float) else value
            lines.append(f"  {method:14s} {name:14s} {'MET' if target['met'] else 'MISSED'} ({shown})")
        for comparison in entry.get("against_uniform", []):
            lines.append(f"    n={comparison['n']:4d} vs uniform: error {comparison['error']} "
                         f"({-comparison['error_cut_mean']:+.4f}, p={comparison['p_error_lower']:.3g}), "
                         f"tau {comparison['tau']} ({comparison['tau_gain_mean']:+.3f}, p={comparison['p_tau_higher']:.3g})")
    return lines


def summary_line(result: dict) -> str:
    parts = []
    for method, entry in result["methods"].items():
        n = entry["smallest_n_tau_0.9"]
        reach = f"tau>=0.9 at n={n} ({entry['times_fewer_items']:.0f}x fewer)" if n else "tau>=0.9 not reached"
        parts.append(f"{method}: {reach}, error@100 {entry['error_at_100']:.4f}, "
                     f"pairs stand {entry['reliability_at_100']['pairwise_agreement']:.2f}")
    return "efficient_benchmarking: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, help="an .npz pool (Y, C, scenarios, scenario_names, models, item_tokens)")
    parser.add_argument("--pool-cache", type=Path, default=ROOT / "runs" / "suite_pool.npz",
                        help="where benchmarks.suite_pool builds the pool when --pool is not given")
    parser.add_argument("--synthetic", action="store_true", help="draw a 2PL pool instead (trying the study)")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic pool's seed")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(sel.METHODS))
    parser.add_argument("--sizes", nargs="+", default=[str(size) for size in SIZES],
                        help="subset sizes (numbers, or 'all' for the full suite)")
    parser.add_argument("--repeats", type=int, default=20, help="seeds per method and size")
    parser.add_argument("--draws", type=int, default=20, help="re-drawn subsets for the reliability at n=100")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    pool = build_or_load(args)
    print(f"pool: {len(pool.models)} models, {pool.Y.shape[1]} items, {len(pool.scenario_names)} scenarios")
    sizes = [size if size == "all" else int(size) for size in args.sizes]
    result = study(pool, methods=args.methods, sizes=sizes, repeats=args.repeats, draws=args.draws)
    result["pool"]["source"] = "synthetic 2PL" if args.synthetic else str(args.pool or args.pool_cache)
    if not args.synthetic and "anchor_points" in args.methods:     # the loop's default method, at its default size
        from benchmarks import suite_pool
        chosen = sel.select("anchor_points", pool.Y, pool.C, pool.scenarios, ERROR_AT, 0).items
        result["compute"] = suite_pool.measure_compute(chosen)
        c = result["compute"]
        print(f"  compute per short job (rung 0 transformer, 1 thread): training {c['train_short_seconds']:.2f} s; "
              f"whole suite {c['whole_suite_seconds']:.2f} s ({c['whole_suite_tokens']:,} tokens), "
              f"{c['anchor_items']} anchors {c['anchor_seconds']:.3f} s ({c['anchor_tokens']:,} tokens)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("\n".join(report(result)))
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
