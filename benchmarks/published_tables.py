"""Evaluators against published tables: do our proxies, cheap-score learner and curve extrapolation reproduce them?

Three public tables (`--data DIR`, e.g. `../shared/data/nas-benchmarks`; see ../shared/data/README.md) grade
archlab's evaluators where researchers already know the answer:

a. **Data-free proxies on NAS-Bench-201.** Every cell of NASLib's zero-cost table (491) plus a
   fixed, seeded sample of 1,000 other cells is built as the standard NB201 network
   (`evaluators.nb201`) for each dataset (CIFAR-10, CIFAR-100: 32x32; ImageNet16-120: 16x16)
   and scored with `synflow` (`evaluators.proxies.synflow`, on the BN-free copy, batch 1,
   float64, as Abdelfattah et al. 2021), params and FLOPs; Spearman rho and Kendall tau
   against the table's validation accuracy, beside the published figures. Our params/FLOPs
   are checked against the table's for every NASLib cell. The data-dependent proxies
   (grad_norm, snip, NASWOT, jacob_cov) need CIFAR images, which no machine here has: they
   are computed on a fixed batch of Gaussian images with random labels (a different
   setting from the published one) for the 491 NASLib cells, correlated with accuracy, and
   compared rank by rank with NASLib's real-data scores for the same cells.
b. **The cheap-score learner** (`evaluators.promotion.CheapScore`) on the 491 cells: fitted on
   k labelled cells (k = 10, 25, 50; `LEARNER_SEEDS` draws each), Kendall tau on the other
   cells, against the best single proxy (picked on the same k cells, and with hindsight on
   the rest); once over our proxies, once over NASLib's eleven real-data scores.
c. **Multi-fidelity on NAS-Bench-NLP** (341 finished WikiText-2 models, 50 epochs): ranking the
   epoch-50 validation loss from the first k epochs (k = 1, 5, 10) by the raw epoch-k loss,
   by the power law of `evaluators.curves` extrapolated to epoch 50, and by the cheap score
   over both (their ranks averaged, no labels); then successive halving
   (`evaluators.promotion.successive_halving`) on the largest geometric schedule that fits in
   10% of the budget of training every model, with its regret (best epoch-50 loss found minus
   the true best) beside random search at the same budget.

    .venv/bin/python benchmarks/published_tables.py --data ../shared/data/nas-benchmarks           # ~7 min, 2 idle cores
    .venv/bin/python benchmarks/published_tables.py --data ../shared/data/nas-benchmarks --quick   # smoke test, ~30 CPU-s

Writes benchmarks/results/published_tables.json (`--quick`: published_tables_quick.json) and a
plot beside it, and prints a one-line summary. Proxies run in-process in `--workers` spawned
processes with one torch thread each (no sandbox: these are fixed, trusted networks).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from evaluators import nb201  # noqa: E402
from evaluators.curves import extrapolate_at  # noqa: E402
from evaluators.promotion import CheapScore, Rung, kendall, successive_halving  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FILES = {"accuracy": "nb201_val_accuracy.json", "naslib": "zc_nasbench201.json", "nlp": "nasbench_nlp_wt2_curves.json"}
DATASETS = tuple(nb201.NUM_CLASSES)            # cifar10, cifar100, ImageNet16-120
SAMPLE_SIZE, QUICK_SAMPLE = 1000, 16           # NB201 cells drawn besides NASLib's 491
QUICK_NASLIB = 16                              # NASLib cells kept by --quick
SAMPLE_SEED = 0                                # which cells are drawn
INIT_SEED = 0                                  # every network is initialised from this seed
SYNTHETIC_BATCH = 32                           # images in the synthetic batch of the data-dependent proxies
SYNTHETIC_SEED = 12_345                        # the same batch for every cell
TARGET_SYNFLOW_GAP = 0.05                      # the bar: |our synflow rho - published| on every dataset
LEARNER_K = (10, 25, 50)                       # labelled cells the cheap-score learner is fitted on
LEARNER_SEEDS = 10                             # draws of the labelled cells per k
NLP_EPOCHS = 50                                # NAS-Bench-NLP's full training
NLP_K = (1, 5, 10)                             # early epochs the rankings see
BUDGET_FRACTION = 0.10                         # successive halving's budget, share of training every model fully
RANDOM_DRAWS = 2000                            # draws of the random-search baseline

# Abdelfattah et al. 2021, all of NB201, Spearman rho (CIFAR-10 / CIFAR-100 / ImageNet16-120); NASLib's
# committed correlation runs for params and FLOPs (ranges); NAS-Bench-NLP epoch-k loss vs epoch 50
PUBLISHED_RHO = {
    "synflow": (0.737, 0.763, 0.751), "jacob_cov": (0.731, 0.704, 0.701), "snip": (0.60, 0.64, 0.58),
    "grad_norm": (0.59, 0.64, 0.58), "params": (0.69, 0.72), "flops": (0.67, 0.70),
}
PUBLISHED_NLP = {1: {"spearman": 0.78, "kendall": 0.58}, 5: {"spearman": 0.91, "kendall": 0.76},
                 10: {"spearman": 0.94, "kendall": 0.83}, "params_spearman": 0.10}
DATA_FREE = ("synflow", "params", "flops")
SYNTHETIC = ("grad_norm", "snip", "naswot", "jacob_cov")
NASLIB_NAME = {"synflow": "synflow", "params": "params", "flops": "flops", "grad_norm": "grad_norm",
               "snip": "snip", "jacob_cov": "jacov"}          # our proxy -> NASLib's field
NASLIB_SCORES = ("flops", "params", "snip", "jacov", "grad_norm", "plain", "epe_nas", "fisher", "grasp", "l2_norm",
                 "synflow")


class MissingTables(FileNotFoundError):
    """`--data` does not hold the tables (the user's argument, or a checkout without ../shared/data)."""


@dataclass
class Tables:
    accuracy: dict[nb201.Genome, dict[str, float]]             # all 15,625 cells: dataset -> val accuracy (%)
    naslib: dict[str, dict[nb201.Genome, dict[str, float]]]    # dataset -> 491 cells -> NASLib's scores
    nlp: list[dict]                                            # NAS-Bench-NLP models that finished 50 epochs


def load_tables(data: Path) -> Tables:
    data = Path(data)
    missing = [name for name in FILES.values() if not (data / name).is_file()]
    if missing:
        raise MissingTables(f"{data} lacks {', '.join(missing)}; pass --data the nas-benchmarks directory "
                            "(in a checkout next to shared/: ../shared/data/nas-benchmarks)")
    raw = {key: json.loads((data / name).read_text()) for key, name in FILES.items()}
    accuracy = {nb201.check_genome(a["arch"]): a["val_accuracy"] for a in raw["accuracy"]["architectures"]}
    naslib = {ds: {nb201.genome_from_key(k): v for k, v in cells.items()}
              for ds, cells in raw["naslib"]["nasbench201"].items()}
    nlp = [m for m in raw["nlp"]["models"]
           if m["status"] == "OK" and len(m["val_losses"]) == NLP_EPOCHS and all(map(math.isfinite, m["val_losses"]))]
    return Tables(accuracy, naslib, nlp)


def nb201_cells(tables: Tables, sample: int, naslib_cells: int | None = None,
                seed: int = SAMPLE_SEED) -> tuple[list[nb201.Genome], list[nb201.Genome]]:
    """(NASLib's cells, in table order, optionally the first `naslib_cells`; `sample` other cells drawn with `seed`)."""
    naslib = list(tables.naslib["cifar10"])[:naslib_cells]
    known = set(tables.naslib["cifar10"])
    others = sorted(g for g in tables.accuracy if g not in known)
    rng = np.random.default_rng(seed)
    drawn = [others[i] for i in sorted(rng.choice(len(others), size=sample, replace=False))]
    return naslib, drawn


# --- proxies of one cell (run in workers) -------------------------------------------------------

def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def data_free_scores(genome: nb201.Genome) -> dict[str, dict[str, float]]:
    """{dataset: {synflow, params, flops}} of one cell, each network freshly initialised from `INIT_SEED`."""
    import torch

    from evaluators.proxies import synflow
    out = {}
    for ds in DATASETS:
        torch.manual_seed(INIT_SEED)
        model = nb201.build_network(genome, ds)
        scores = {"params": nb201.params_millions(model), "flops": nb201.flops_millions(model, ds)}
        torch.manual_seed(INIT_SEED)
        bare = nb201.build_network(genome, ds, batchnorm=False)
        scores["synflow"] = synflow(bare, nb201.example_input(ds), token_input=False)
        out[ds] = scores
    return out


def synthetic_batch():
    import torch
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    x = torch.randn(SYNTHETIC_BATCH, 3, 32, 32, generator=g)
    y = torch.randint(0, nb201.NUM_CLASSES["cifar10"], (SYNTHETIC_BATCH,), generator=g)
    return x, y


def synthetic_scores(genome: nb201.Genome) -> dict[str, float]:
    """grad_norm, snip, naswot, jacob_cov of the CIFAR-10 network on the synthetic batch (not CIFAR)."""
    import torch
    import torch.nn.functional as F

    from evaluators.proxies import jacob_cov, loss_gradient_proxies, naswot
    x, y = synthetic_batch()

    def fresh():
        torch.manual_seed(INIT_SEED)
        return nb201.build_network(genome, "cifar10")

    scores = loss_gradient_proxies(fresh(), x, y, F.cross_entropy)
    scores["naswot"] = naswot(fresh(), x)
    scores["jacob_cov"] = jacob_cov(fresh(), x)
    return scores


def _timed(job: tuple) -> tuple:
    fn, cell = job
    started = time.process_time()
    return fn(cell), time.process_time() - started


def map_cells(fn, cells: list, workers: int, cpu: dict | None = None) -> list:
    """[fn(cell) for cell in cells] over `workers` processes; `cpu[fn name]` gets the summed CPU seconds."""
    jobs = [(fn, c) for c in cells]
    if workers <= 1:
        _init_worker()
        done = [_timed(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            done = pool.map(_timed, jobs, chunksize=8)
    if cpu is not None:
        cpu[fn.__name__] = round(sum(seconds for _, seconds in done), 1)
    return [result for result, _ in done]


# --- statistics -----------------------------------------------------------------------------------

def correlation(scores, quality) -> dict[str, float]:
    """Spearman rho and Kendall tau-b (non-finite scores rank lowest)."""
    x = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, x[finite].min() - 1.0 if finite.any() else 0.0)
    return {"spearman": round(float(stats.spearmanr(x, quality).statistic), 4),
            "kendall": round(float(stats.kendalltau(x, quality).statistic), 4), "n": len(x)}


def _published(name: str, index: int):
    values = PUBLISHED_RHO.get(name)
    return values[index] if values and index < len(values) else None


# --- a. proxies on NB201 ----------------------------------------------------------------------------

def section_a(tables: Tables, naslib: list, drawn: list, free: dict, synthetic: dict) -> dict:
    """Correlations of our proxies with accuracy, beside the published ones and NASLib's for the same cells."""
    cells = naslib + drawn
    out: dict = {"cells": {"naslib": len(naslib), "sampled": len(drawn), "sample_seed": SAMPLE_SEED},
                 "data_free": {}, "synthetic": {}, "cost_check": {}}
    for i, ds in enumerate(DATASETS):
        acc_all = [tables.accuracy[g][ds] for g in cells]
        acc_zc = [tables.accuracy[g][ds] for g in naslib]
        table = tables.naslib[ds]
        rows = {}
        for name in DATA_FREE:
            ours_zc = [free[g][ds][name] for g in naslib]
            theirs = [table[g][NASLIB_NAME[name]] for g in naslib]
            rows[name] = {"ours_all_cells": correlation([free[g][ds][name] for g in cells], acc_all),
                          "ours_naslib_cells": correlation(ours_zc, acc_zc),
                          "naslib_naslib_cells": correlation(theirs, acc_zc),
                          "agreement_with_naslib_spearman": correlation(ours_zc, theirs)["spearman"],
                          "published_spearman": _published(name, i)}
        gap = abs(rows["synflow"]["ours_all_cells"]["spearman"] - PUBLISHED_RHO["synflow"][i])
        rows["synflow"]["gap_to_published"] = round(gap, 4)
        out["data_free"][ds] = rows
        out["cost_check"][ds] = {
            f"{name}_max_relative_error": float(max(abs(free[g][ds][name] / table[g][name] - 1) for g in naslib))
            for name in ("params", "flops")}
        rows = {}
        for name in SYNTHETIC:
            ours = [synthetic[g][name] for g in naslib]
            row = {"ours_synthetic": correlation(ours, acc_zc), "published_spearman": _published(name, i)}
            if name in NASLIB_NAME:
                theirs = [table[g][NASLIB_NAME[name]] for g in naslib]
                row["naslib_real_data"] = correlation(theirs, acc_zc)
                row["agreement_with_naslib_spearman"] = correlation(ours, theirs)["spearman"]
            rows[name] = row
        out["synthetic"][ds] = rows
    gaps = [out["data_free"][ds]["synflow"]["gap_to_published"] for ds in DATASETS]
    out["target"] = {"synflow_within": TARGET_SYNFLOW_GAP, "worst_gap": max(gaps),
                     "met": bool(max(gaps) <= TARGET_SYNFLOW_GAP)}
    return out


# --- b. the cheap-score learner ------------------------------------------------------------------------

def learner_study(signals: dict[str, dict[str, float]], quality: dict[str, float], names: tuple[str, ...],
                  ks=LEARNER_K, seeds: int = LEARNER_SEEDS) -> dict:
    """Per k: Kendall tau on the unlabelled cells of CheapScore fitted on k labelled ones, and of single proxies."""
    ids = sorted(quality)
    out = {}
    for k in ks:
        if k + 3 > len(ids):
            continue
        learned, picked, hindsight, chosen = [], [], [], []
        for seed in range(seeds):
            order = np.random.default_rng(seed).permutation(len(ids))
            labelled = [ids[j] for j in order[:k]]
            rest = [ids[j] for j in order[k:]]
            target = [quality[c] for c in rest]
            fit = CheapScore.fit(signals, {c: quality[c] for c in labelled}, names=names)
            scores = fit.score({c: signals[c] for c in rest})
            learned.append(kendall([scores[c] for c in rest], target))
            chosen.append(sorted(n for n, w in fit.weights.items() if w))
            single = {n: kendall([signals[c][n] for c in labelled], [quality[c] for c in labelled]) for n in names}
            best = max(names, key=lambda n: abs(single[n]))
            sign = 1.0 if single[best] >= 0 else -1.0
            picked.append(sign * kendall([signals[c][best] for c in rest], target))
            hindsight.append(max(abs(kendall([signals[c][n] for c in rest], target)) for n in names))
        out[str(k)] = {"learner_tau": _mean_sd(learned), "single_picked_on_k_tau": _mean_sd(picked),
                       "single_best_in_hindsight_tau": _mean_sd(hindsight), "seeds": seeds,
                       "learner_beats_picked_single": float(np.mean(np.array(learned) > np.array(picked))),
                       "signals_chosen_seed0": chosen[0]}
    return out


def _mean_sd(values) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(a.mean()), 4), "sd": round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 4)}


def section_b(tables: Tables, naslib: list, free: dict, synthetic: dict, ks=LEARNER_K,
              seeds: int = LEARNER_SEEDS) -> dict:
    out: dict = {}
    for ds in DATASETS:
        quality = {nb201.to_arch_str(g): tables.accuracy[g][ds] for g in naslib}
        ours = {nb201.to_arch_str(g): {**free[g][ds], **synthetic[g]} for g in naslib}
        theirs = {nb201.to_arch_str(g): {n: tables.naslib[ds][g][n] for n in NASLIB_SCORES} for g in naslib}
        out[ds] = {"our_proxies": learner_study(ours, quality, DATA_FREE + SYNTHETIC, ks, seeds),
                   "naslib_scores": learner_study(theirs, quality, NASLIB_SCORES, ks, seeds)}
    return out


# --- c. NAS-Bench-NLP early stopping ------------------------------------------------------------------

def early_signals(model: dict, epoch: int) -> dict[str, float]:
    """The cheap signals after `epoch` epochs: the raw validation loss and its power law at epoch 50."""
    seen = model["val_losses"][:epoch]
    return {"short_loss": float(seen[-1]),
            "short_extrapolated_loss": extrapolate_at(range(1, epoch + 1), seen, NLP_EPOCHS)}


def plan_halving(n: int, epochs: int = NLP_EPOCHS, budget: float = BUDGET_FRACTION,
                 etas=(2, 3, 4)) -> dict:
    """The geometric schedule (first rung r, rungs r * eta^i, then `epochs`; keep 1/eta) that spends the
    most of `budget` x n x epochs without exceeding it; models resume where the last rung stopped."""
    best: dict | None = None
    for eta in etas:
        for first in range(1, epochs):
            rungs = [first]
            while rungs[-1] * eta < epochs:
                rungs.append(rungs[-1] * eta)
            rungs.append(epochs)
            alive, spent, previous = n, 0, 0
            for i, e in enumerate(rungs):
                spent += alive * (e - previous)
                previous = e
                if i < len(rungs) - 1:
                    alive = min(alive, max(1, math.ceil(alive * (1.0 / eta))))   # as `top_fraction` rounds
            if spent <= budget * n * epochs and (best is None or spent > best["epochs_planned"]):
                best = {"eta": eta, "rungs": rungs, "epochs_planned": spent}
    if best is None:
        raise ValueError(f"no schedule trains {n} models within {budget:.0%} of their full budget")
    return best


def halving_run(models: list[dict], plan: dict, signal_weights: dict[str, float]) -> dict:
    """Successive halving over `models` ranked by the cheap score with `signal_weights`; its regret."""
    by_id = {str(m["recepie_id"]): m for m in models}
    rungs = [Rung(f"epoch-{e}", 1.0 / plan["eta"]) for e in plan["rungs"][:-1]] + [Rung("full", 1.0)]

    def evaluate(fidelity: str, ids: list[str]) -> dict[str, dict[str, float]]:
        if fidelity == "full":
            return {c: {"neg_val_loss": -by_id[c]["val_losses"][-1]} for c in ids}
        epoch = int(fidelity.split("-")[1])
        return {c: early_signals(by_id[c], epoch) for c in ids}

    cheap = CheapScore(dict(signal_weights), tuple(signal_weights))
    record = successive_halving(list(by_id), evaluate, cheap, rungs, quality_metric="neg_val_loss")
    spent, previous = 0, 0
    for rung, e in zip(record.rungs, plan["rungs"]):
        spent += len(rung["scored"]) * (e - previous)
        previous = e
    finals = {c: by_id[c]["val_losses"][-1] for c in by_id}
    found = min(record.finished, key=lambda c: finals[c])
    true_best = min(finals.values())
    return {"regret": round(finals[found] - true_best, 4), "found_loss": round(finals[found], 4),
            "found_rank": int(sorted(finals.values()).index(finals[found])) + 1,
            "budget_used": round(spent / (len(models) * NLP_EPOCHS), 4), "finished": len(record.finished)}


def random_search_regret(models: list[dict], budget: float = BUDGET_FRACTION, draws: int = RANDOM_DRAWS) -> dict:
    finals = np.array([m["val_losses"][-1] for m in models])
    n = max(1, int(budget * len(models)))
    rng = np.random.default_rng(SAMPLE_SEED)
    regrets = np.array([finals[rng.choice(len(finals), n, replace=False)].min() for _ in range(draws)]) - finals.min()
    return {"models_trained_fully": n, "regret_mean": round(float(regrets.mean()), 4),
            "regret_median": round(float(np.median(regrets)), 4), "p_regret_zero": round(float((regrets == 0).mean()), 4)}


def section_c(models: list[dict]) -> dict:
    finals = [m["val_losses"][-1] for m in models]
    ranking: dict = {}
    for k in NLP_K:
        signals = {str(i): early_signals(m, k) for i, m in enumerate(models)}
        prior = CheapScore.prior(("short_loss", "short_extrapolated_loss")).score(signals)
        raw = correlation([s["short_loss"] for s in signals.values()], finals)
        ext = correlation([s["short_extrapolated_loss"] for s in signals.values()], finals)
        both = correlation([-prior[str(i)] for i in range(len(models))], finals)
        quality = {c: -finals[int(c)] for c in signals}
        fitted = learner_study(signals, quality, ("short_loss", "short_extrapolated_loss"), seeds=LEARNER_SEEDS)
        ranking[str(k)] = {"raw_loss": raw, "extrapolated": ext, "cheap_score_raw_and_extrapolated": both,
                           "cheap_score_fitted_on_k_models": fitted,
                           "published_raw": PUBLISHED_NLP[k],
                           "extrapolated_beats_raw": bool(ext["kendall"] > raw["kendall"]),
                           "cheap_score_beats_raw": bool(both["kendall"] > raw["kendall"])}
    plan = plan_halving(len(models))
    halving = {"plan": plan,
               "raw_loss": halving_run(models, plan, {"short_loss": -1.0}),
               "extrapolated": halving_run(models, plan, {"short_extrapolated_loss": -1.0}),
               "cheap_score_raw_and_extrapolated": halving_run(models, plan, {"short_loss": -1.0,
                                                                              "short_extrapolated_loss": -1.0}),
               "random_search": random_search_regret(models)}
    return {"models": len(models), "ranking_epoch_50_val_loss": ranking,
            "params": {**correlation([m["num_params"] for m in models], finals),
                       "published_spearman": PUBLISHED_NLP["params_spearman"]},
            "successive_halving": halving}


# --- the run --------------------------------------------------------------------------------------

def run(data: Path, quick: bool = False, workers: int = 2) -> dict:
    started = time.perf_counter()
    tables = load_tables(data)
    naslib, drawn = nb201_cells(tables, QUICK_SAMPLE if quick else SAMPLE_SIZE, QUICK_NASLIB if quick else None)
    cells = naslib + drawn
    t0 = time.perf_counter()
    cpu: dict[str, float] = {}
    free = dict(zip(cells, map_cells(data_free_scores, cells, workers, cpu)))
    t1 = time.perf_counter()
    synthetic = dict(zip(naslib, map_cells(synthetic_scores, naslib, workers, cpu)))
    t2 = time.perf_counter()
    ks = tuple(k for k in LEARNER_K if k + 3 <= len(naslib)) or (len(naslib) // 2,)
    report = {
        "a_nb201_proxies": section_a(tables, naslib, drawn, free, synthetic),
        "b_cheap_score_learner": section_b(tables, naslib, free, synthetic, ks, 2 if quick else LEARNER_SEEDS),
        "c_nasbench_nlp": section_c(tables.nlp[:60] if quick else tables.nlp),
    }
    import torch
    report["seconds"] = {"data_free_proxies": round(t1 - t0, 1), "synthetic_proxies": round(t2 - t1, 1),
                         "total": round(time.perf_counter() - started, 1),
                         "proxy_cpu_seconds": cpu}      # CPU time of the workers: what 2 idle cores would take x 1/2
    report["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                             "cpu": platform.processor() or platform.machine(), "workers": workers, "quick": quick}
    report["settings"] = {"synthetic_batch": SYNTHETIC_BATCH, "init_seed": INIT_SEED, "sample_seed": SAMPLE_SEED,
                          "flops_convention": "conv + classifier multiply-accumulates, + BN 2 / ReLU 1 per output "
                                              "element, + k*k per output element of k x k average pooling; "
                                              "one image (32x32, ImageNet16-120 16x16); millions",
                          "synflow": "log synflow of the BN-free network, float64, batch 1 of ones"}
    return report


def summary(report: dict) -> str:
    a, c = report["a_nb201_proxies"], report["c_nasbench_nlp"]
    rho = "/".join(f"{a['data_free'][ds]['synflow']['ours_all_cells']['spearman']:.3f}" for ds in DATASETS)
    b = report["b_cheap_score_learner"]["cifar10"]["our_proxies"]
    k = max(b, key=int) if b else None
    learner = f"learner tau@k={k} {b[k]['learner_tau']['mean']:.3f} vs single {b[k]['single_picked_on_k_tau']['mean']:.3f}" \
        if k else "learner: too few cells"
    r10 = c["ranking_epoch_50_val_loss"][str(NLP_K[-1])]
    sh = c["successive_halving"]
    return (f"published_tables: synflow rho {rho} (published .737/.763/.751, worst gap {a['target']['worst_gap']:.3f}, "
            f"target {'met' if a['target']['met'] else 'MISSED'}); {learner}; NLP k={NLP_K[-1]} tau raw "
            f"{r10['raw_loss']['kendall']:.3f} extrapolated {r10['extrapolated']['kendall']:.3f} cheap score "
            f"{r10['cheap_score_raw_and_extrapolated']['kendall']:.3f}; halving regret "
            f"{sh['cheap_score_raw_and_extrapolated']['regret']:.3f} at {sh['cheap_score_raw_and_extrapolated']['budget_used']:.1%}"
            f" (random {sh['random_search']['regret_mean']:.3f}); {report['seconds']['total']:.0f}s")


def plot(report: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    a, c = report["a_nb201_proxies"], report["c_nasbench_nlp"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(DATASETS))
    for j, name in enumerate(DATA_FREE):
        ours = [a["data_free"][ds][name]["ours_all_cells"]["spearman"] for ds in DATASETS]
        axes[0].bar(x + (j - 1) * 0.25, ours, 0.25, label=f"{name} (ours)")
    axes[0].scatter(x - 0.25, PUBLISHED_RHO["synflow"], color="k", marker="_", s=400, label="synflow (published)")
    axes[0].set_xticks(x, DATASETS)
    axes[0].set_ylabel("Spearman rho vs validation accuracy")
    axes[0].set_title("NAS-Bench-201 data-free proxies")
    axes[0].legend(fontsize=8)
    ks = list(c["ranking_epoch_50_val_loss"])
    for key, label in (("raw_loss", "raw epoch-k loss"), ("extrapolated", "power-law extrapolation"),
                       ("cheap_score_raw_and_extrapolated", "cheap score (both)")):
        axes[1].plot([int(k) for k in ks], [c["ranking_epoch_50_val_loss"][k][key]["kendall"] for k in ks], "o-",
                     label=label)
    axes[1].set_xlabel("epochs seen (k)")
    axes[1].set_ylabel("Kendall tau vs epoch-50 val loss")
    axes[1].set_title("NAS-Bench-NLP early ranking")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the nas-benchmarks directory (see ../shared/data/README.md)")
    parser.add_argument("--quick", action="store_true", help="a small slice, to check the plumbing")
    parser.add_argument("--workers", type=int, default=2, help="processes computing proxies (one torch thread each)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("published_tables_quick.json" if args.quick else "published_tables.json")
    try:
        report = run(args.data, args.quick, args.workers)
    except MissingTables as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    plot(report, out.with_suffix(".png"))
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
