"""Proxy validation: how well do the cheap fidelities rank architectures, and at what cost?

For each task, a fixed pool of architectures (seeded; for the sequence tasks genomes of the
offline engine's building blocks, `agents.offline.blocks.render`; for digits small MLPs and
CNNs written here) is evaluated once at every fidelity: `proxy` (params, FLOPs, activation
memory and the zero-cost proxies of `evaluators.proxies`), `short` and `full` training. Then,
against full-fidelity quality (held-out accuracy), it reports the Spearman rho and Kendall
tau of

- every proxy, oriented by its prior direction (`evaluators.promotion.PRIORS`), so a
  positive number means "ranks the right way round";
- `short` (held-out accuracy and loss after the short budget);
- the full-budget loss extrapolated from the short curve (`evaluators.curves`);
- the combined cheap score (`evaluators.promotion.CheapScore`), scored leave-one-out: each
  candidate's score comes from weights fitted on the other candidates' full results, as the
  search would have them (an in-sample figure would flatter it); once over the proxies only,
  once over proxies and short signals;

and each signal's cost as a fraction of full: summed wall time of what computing it needs
(a proxy: its own computation; short signals: the short run; combined: proxy + short) over
the summed wall time of the full runs.

How it runs: jobs run in-process (no sandbox: the sandbox's start-up would dominate the
proxy cost and is not what is being measured), in `--workers` worker processes with one
torch thread each, on the same code the sandbox runner calls (`evaluators.fidelities`,
`evaluators.proxies`); held-out scoring uses the task's host-side `heldout`/`score`. Timings
on a shared machine are noisy; the cost fractions are ratios of times measured side by side.

    .venv/bin/python benchmarks/proxy_validation.py --task mqar          # the study (~15-20 min, 2 cores)
    .venv/bin/python benchmarks/proxy_validation.py --quick              # smoke test (~1 min)

Writes benchmarks/results/proxy_validation.json (and proxy_validation.png; `--quick` writes
proxy_validation_quick.*) and prints one summary line per task.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
POOL_SEED = 0                # genomes are drawn from this seed
TRAIN_SEED = 0               # every candidate is built and trained from this seed
TARGET_TAU = 0.6             # the bar for the combined cheap score ...
TARGET_COST = 0.10           # ... at this fraction of the full cost

# per task: spec options for the study and for --quick (budgets chosen so mqar runs in ~15-20 min on 2 cores)
SETTINGS = {
    # mqar's short run trains on a smaller instance (2 pairs in 16 tokens), where recall appears within
    # ~60 steps; on the study's own instance an 8% run ends before any model leaves chance level
    "mqar": {"study": {"seq_len": 48, "num_pairs": 6, "num_queries": 6, "short_steps": 64, "full_steps": 800,
                       "short_seq_len": 16, "short_num_pairs": 2},
             "quick": {"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 10, "full_steps": 100,
                       "short_seq_len": 16, "short_num_pairs": 2},
             "batch_size": 32, "pool": 24, "quick_pool": 8},
    "charlm": {"study": {"seq_len": 64, "short_steps": 40, "full_steps": 500, "heldout_size": 64},
               "quick": {"seq_len": 32, "short_steps": 8, "full_steps": 80, "heldout_size": 32},
               "batch_size": 32, "pool": 24, "quick_pool": 8},
    "digits": {"study": {"short_steps": 100, "full_steps": 2000},
               "quick": {"short_steps": 10, "full_steps": 100},
               "batch_size": 64, "pool": 24, "quick_pool": 8},
}


# --- pools --------------------------------------------------------------------------------

def sequence_pool(n: int, seed: int = POOL_SEED) -> list[dict]:
    """`n` distinct genomes of the offline engine's building blocks (`agents.offline.blocks.random_genomes`)."""
    from agents.offline.blocks import random_genomes
    return random_genomes(n, seed)


VISION_TEMPLATE = '''"""A small {kind} for 8x8 digits."""
import torch
import torch.nn as nn

CONFIG = {config!r}


def act():
    return {{"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}}[CONFIG["act"]]()


def build_model(spec):
    w, depth = CONFIG["width"], CONFIG["depth"]
    layers = []
    if CONFIG["kind"] == "cnn":
        channels = 1
        for i in range(depth):
            layers += [nn.Conv2d(channels, w, 3, padding=1), act()]
            if CONFIG["norm"]:
                layers.append(nn.GroupNorm(1, w))
            channels = w
        layers += [nn.AdaptiveAvgPool2d(2) if CONFIG["pool"] else nn.Identity(), nn.Flatten(),
                   nn.Linear(w * (4 if CONFIG["pool"] else 64), spec.num_classes)]
    else:
        features = 64
        layers.append(nn.Flatten())
        for i in range(depth):
            layers += [nn.Linear(features, w), act()]
            if CONFIG["norm"]:
                layers.append(nn.LayerNorm(w))
            features = w
        layers.append(nn.Linear(features, spec.num_classes))
    return nn.Sequential(*layers)
'''


def vision_pool(n: int, seed: int = POOL_SEED) -> list[dict]:
    rng = np.random.default_rng(seed)
    pool, seen = [], set()
    while len(pool) < n:
        genome = {"kind": ["mlp", "cnn"][len(pool) % 2], "width": int(rng.choice([4, 8, 16, 32, 64])),
                  "depth": int(rng.choice([1, 2, 3])), "act": str(rng.choice(["relu", "gelu", "tanh"])),
                  "norm": bool(rng.random() < 0.5), "pool": bool(rng.random() < 0.5)}
        key = json.dumps(genome, sort_keys=True)
        if key not in seen:
            seen.add(key)
            pool.append(genome)
    return pool


def render_candidate(task: str, genome: dict) -> str:
    if task == "digits":
        return VISION_TEMPLATE.format(kind=genome["kind"], config=genome)
    from agents.offline.blocks import render
    return render(genome)


# --- one candidate, every fidelity (runs in a worker) --------------------------------------

def evaluate_candidate(job: dict) -> dict:
    """proxy, short and full for one candidate, timed; in-process, one torch thread."""
    import torch

    from evaluators import fidelities
    from evaluators.proxies import compute_proxies
    from evaluators.heldout import machine_secret
    from wire.task import TaskSpec
    from evaluators.tasks import get_task

    torch.set_num_threads(1)
    task = get_task(job["task"])
    spec = TaskSpec.model_validate(job["spec"])
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(job["source"])
        module = fidelities.load_candidate(path)
    out: dict = {"id": job["id"], "genome": job["genome"], "status": "ok"}
    try:
        t0 = time.perf_counter()
        model = fidelities.build(module, spec, TRAIN_SEED)
        out["check"] = fidelities.check(task, spec, model, device)
        timings: dict[str, float] = {}
        out["proxy"] = compute_proxies(task, spec, lambda: fidelities.build(module, spec, TRAIN_SEED), device, timings)
        out["proxy_timings"] = timings
        out["proxy_seconds"] = time.perf_counter() - t0
        for fidelity in ("short", "full"):
            t0 = time.perf_counter()
            instance = spec.at(fidelity)               # short may train on a smaller instance of the task
            inputs, targets = task.heldout(instance, machine_secret())   # trusted, in-process study
            model = fidelities.build(module, instance, TRAIN_SEED)
            trained = fidelities.train(task, instance, model, spec.budgets[fidelity], TRAIN_SEED, device)
            predictions = fidelities.heldout_predictions(task, model, inputs)
            scores = task.score(instance, predictions.astype(np.float64), targets)
            out[fidelity] = {**{k: v for k, v in trained.items() if k != "curve"}, **scores,
                             "curve": trained["curve"], "seconds": time.perf_counter() - t0}
    except (fidelities.ContractViolation, fidelities.Diverged) as exc:
        out.update(status="failed", message=str(exc))
    return out


# --- analysis -------------------------------------------------------------------------------

def correlations(signal: dict[str, float], quality: dict[str, float], direction: float) -> dict[str, float]:
    ids = [c for c in quality if c in signal and math.isfinite(signal[c])]
    x = [direction * signal[c] for c in ids]
    y = [quality[c] for c in ids]
    if len(ids) < 3 or np.ptp(x) == 0:
        return {"spearman": 0.0, "kendall": 0.0, "n": len(ids)}
    return {"spearman": float(stats.spearmanr(x, y).statistic), "kendall": float(stats.kendalltau(x, y).statistic),
            "n": len(ids)}


def analyse(task: str, spec, results: list[dict]) -> dict:
    from evaluators.promotion import PRIORS, PROXY_SIGNALS, SHORT_SIGNALS, cross_validated_tau, short_signals

    ok = [r for r in results if r["status"] == "ok"]
    quality = {r["id"]: r["full"]["accuracy"] for r in ok}
    full_cost = sum(r["full"]["seconds"] for r in ok)
    short_cost = sum(r["short"]["seconds"] for r in ok)
    proxy_cost = sum(r["proxy_seconds"] for r in ok)
    budgets = spec.budgets
    signals: dict[str, dict[str, float]] = {}
    for r in ok:
        sig = {name: r["proxy"][name] for name in PROXY_SIGNALS if name in r["proxy"]}
        sig.update(short_signals(r["short"], r["short"]["curve"], budgets["short"].steps, budgets["full"].steps))
        signals[r["id"]] = sig
    table = {}
    for name in PROXY_SIGNALS:
        if not any(name in sig for sig in signals.values()):
            continue                                # not defined for this task family (erf on images)
        cost = sum(r["proxy_timings"].get(name, 0.0) for r in ok) / full_cost
        table[name] = {**correlations({c: s[name] for c, s in signals.items() if name in s}, quality, PRIORS[name]),
                       "cost_fraction": cost}
    for name in SHORT_SIGNALS:
        table[name] = {**correlations({c: s[name] for c, s in signals.items() if name in s}, quality, PRIORS[name]),
                       "cost_fraction": short_cost / full_cost}
    for label, names, cost in (("combined_proxies", PROXY_SIGNALS, proxy_cost),
                               ("combined_cheap", PROXY_SIGNALS + SHORT_SIGNALS, proxy_cost + short_cost)):
        tau, scores = cross_validated_tau(signals, quality, names=names)
        table[label] = {**correlations(scores, quality, 1.0), "cost_fraction": cost / full_cost,
                        "protocol": "leave-one-out"}
    combined = table["combined_cheap"]
    # informational: how early does the full run's own training loss rank like its end result?
    # (a prefix of the full run, with the full run's schedule: an upper bound for a short run of that length)
    points = min(len(r["full"]["curve"]) for r in ok) if ok else 0
    prefix = []
    for i in range(points):
        loss = {r["id"]: r["full"]["curve"][i] for r in ok}
        prefix.append({"fraction": (i + 1) / points, **correlations(loss, quality, -1.0)})
    return {
        "task": task, "spec": spec.model_dump(), "pool_size": len(results), "ok": len(ok),
        "failed": [{"id": r["id"], "message": r.get("message", "")} for r in results if r["status"] != "ok"],
        "quality_metric": "accuracy", "quality_range": [min(quality.values()), max(quality.values())] if quality else [],
        "seconds": {"proxy": proxy_cost, "short": short_cost, "full": full_cost},
        "signals": table,
        "full_curve_prefix": prefix,
        "target": {"kendall": TARGET_TAU, "cost_fraction": TARGET_COST,
                   "met": combined["kendall"] >= TARGET_TAU and combined["cost_fraction"] <= TARGET_COST},
        "candidates": results,
    }


def plot(reports: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 2, figsize=(13, 4.2 * len(reports)), squeeze=False)
    for row, report in zip(axes, reports):
        names = list(report["signals"])
        taus = [report["signals"][n]["kendall"] for n in names]
        costs = [report["signals"][n]["cost_fraction"] for n in names]
        colors = ["tab:green" if n.startswith("combined") else "tab:orange" if n.startswith("short") else "tab:blue"
                  for n in names]
        row[0].barh(names, taus, color=colors)
        for i, c in enumerate(costs):
            row[0].text(max(taus[i], 0) + 0.02, i, f"{100 * c:.2g}% of full", va="center", fontsize=8)
        row[0].axvline(TARGET_TAU, color="k", ls="--", lw=0.8)
        row[0].set_xlim(-1, 1.35)
        row[0].set_xlabel("Kendall tau vs full-fidelity accuracy")
        row[0].set_title(f"{report['task']}: rank agreement of cheap signals (n={report['ok']})")
        row[0].invert_yaxis()
        ok = [c for c in report["candidates"] if c["status"] == "ok"]
        row[1].scatter([c["short"]["accuracy"] for c in ok], [c["full"]["accuracy"] for c in ok], s=18)
        row[1].set_xlabel("short accuracy")
        row[1].set_ylabel("full accuracy")
        row[1].set_title(f"{report['task']}: short vs full")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_task(task_name: str, quick: bool, workers: int) -> dict:
    from evaluators.tasks import get_task

    settings = SETTINGS[task_name]
    task = get_task(task_name)
    spec = task.default_spec(**settings["quick" if quick else "study"])
    for fidelity in ("short", "full"):
        spec.budgets[fidelity] = spec.budgets[fidelity].model_copy(update={"batch_size": settings["batch_size"]})
    n = settings["quick_pool" if quick else "pool"]
    genomes = vision_pool(n) if task_name == "digits" else sequence_pool(n)
    jobs = [{"id": f"{task_name}-{i:02d}", "task": task_name, "spec": spec.model_dump(), "genome": g,
             "source": render_candidate(task_name, g)} for i, g in enumerate(genomes)]
    started = time.perf_counter()
    results = []
    with multiprocessing.get_context("spawn").Pool(max(1, workers)) as pool:
        for result in pool.imap(evaluate_candidate, jobs, chunksize=1):
            results.append(result)
            full = result.get("full", {})
            print(f"  [{task_name} {len(results)}/{len(jobs)}] {result['id']} {result['status']} "
                  f"full accuracy={full.get('accuracy', float('nan')):.3f} in {full.get('seconds', 0.0):.1f}s "
                  f"({(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr, flush=True)
    report = analyse(task_name, spec, results)
    report["wall_seconds"] = time.perf_counter() - started
    return report


def reanalyse(stored: dict) -> dict:
    """The analysis of stored candidates, recomputed (after a change to the analysis or the cheap score)."""
    from wire.task import TaskSpec

    report = analyse(stored["task"], TaskSpec.model_validate(stored["spec"]), stored["candidates"])
    report["wall_seconds"] = stored["wall_seconds"]
    return report


def summary(report: dict) -> str:
    s = report["signals"]
    first = next((p["fraction"] for p in report["full_curve_prefix"] if p["kendall"] >= TARGET_TAU), None)
    prefix = (f"the full run's own loss first reaches tau>={TARGET_TAU} after {100 * first:.0f}% of its steps"
              if first is not None else f"the full run's own loss never reaches tau>={TARGET_TAU}")
    proxies = {k: v for k, v in s.items() if not k.startswith(("short", "combined"))}
    best = max(proxies, key=lambda k: proxies[k]["kendall"])
    c = s["combined_cheap"]
    return (f"{report['task']}: combined cheap score tau={c['kendall']:.2f} (rho={c['spearman']:.2f}, leave-one-out) "
            f"at {100 * c['cost_fraction']:.1f}% of full cost; short accuracy tau={s['short_quality']['kendall']:.2f}; "
            f"extrapolated tau={s['short_extrapolated_loss']['kendall']:.2f}; best proxy {best} "
            f"tau={proxies[best]['kendall']:.2f}; proxies combined tau={s['combined_proxies']['kendall']:.2f} at "
            f"{100 * s['combined_proxies']['cost_fraction']:.2f}%; target tau>={TARGET_TAU} at <={100 * TARGET_COST:.0f}%: "
            f"{'met' if report['target']['met'] else 'not met'}; {prefix} (n={report['ok']}, "
            f"{report['wall_seconds'] / 60:.1f} min)")


def _stored_results(path: Path, tasks: list[str], quick: bool) -> dict | None:
    """The stored per-task results that --reanalyse reads, or None after saying which command writes them."""
    default = RESULTS / ("proxy_validation_quick.json" if quick else "proxy_validation.json")
    produce = " ".join([".venv/bin/python benchmarks/proxy_validation.py", "--task", "all" if len(tasks) > 1 else tasks[0],
                        *(["--quick"] if quick else []), *([] if path == default else ["--out", str(path)])])
    try:
        stored = json.loads(path.read_text()).get("tasks", {})
    except FileNotFoundError:
        print(f"--reanalyse needs stored results, and {path} does not exist; `{produce}` trains the pool and writes "
              "it (see the module docstring for how long)", file=sys.stderr)
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        print(f"{path} is not a proxy-validation result ({exc}); `{produce}` writes a fresh one", file=sys.stderr)
        return None
    missing = [t for t in tasks if t not in stored]
    if missing:
        print(f"{path} holds no results for {', '.join(missing)} (it has {', '.join(stored) or 'none'}); "
              f"`{produce}` measures them", file=sys.stderr)
        return None
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["mqar", "charlm", "digits", "all"], default="mqar")
    parser.add_argument("--quick", action="store_true", help="a small pool and tiny budgets: a smoke test")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--reanalyse", action="store_true",
                        help="recompute correlations from the candidates stored in --out, without training")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default benchmarks/results/proxy_validation[_quick].json)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / ("proxy_validation_quick.json" if args.quick else "proxy_validation.json")
    import torch

    tasks = ["mqar", "charlm", "digits"] if args.task == "all" else [args.task]
    if args.reanalyse:
        stored = _stored_results(args.out, tasks, args.quick)
        if stored is None:
            return 2
        reports = [reanalyse(stored[t]) for t in tasks]
    else:
        reports = [run_task(t, args.quick, args.workers) for t in tasks]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}   # other tasks' sections are kept
    document = {"schema_version": 1, "quick": args.quick,
                "environment": {"torch": torch.__version__, "python": platform.python_version(),
                                "machine": platform.machine(), "workers": args.workers, "threads_per_worker": 1},
                "tasks": {**previous.get("tasks", {}), **{r["task"]: r for r in reports}}}
    args.out.write_text(json.dumps(document, indent=1))
    plot(list(document["tasks"].values()), args.out.with_suffix(".png"))
    for report in reports:
        print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
