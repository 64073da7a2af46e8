"""Every inference technique of the offline catalogue against both references, on the same prompts, paired.

Each technique is rendered by `agents.offline.decoding.render` and evaluated exactly as the
loop evaluates a `decode` candidate: one job per technique in the process sandbox at the
chosen fidelity (`short` by default), where the candidate and greedy decoding with a KV
cache alternate pass by pass on the same prompts, each pass in fresh processes
(`evaluators.decoding_job`), and the ids are judged on the host. Reported per technique: the
speed-up against cached greedy (the median of per-pass ratios) with its paired signed-rank
~95% interval, the number of passes, the speed-up against no-cache greedy (first 3 passes),
tokens per second, exact match (per token and per prompt), and the model's log-likelihood of
the produced text next to the reference's. The best *lossless* technique (every token
greedy's) is named with its interval, and so is every other lossless one whose interval
overlaps it (the jobs are independent, so overlap is the cautious reading: not shown apart).

    nice -n 19 .venv/bin/python benchmarks/decode_techniques.py [--fidelity short|full] [--cpus 1] [--passes 16]

Writes benchmarks/results/decode_techniques.json (and decode_techniques.png when matplotlib
is installed) and prints a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.offline.decoding import render, techniques  # noqa: E402
from evaluators.bench import cpu_model  # noqa: E402
from evaluators.harness import evaluate  # noqa: E402
from evaluators.tasks import get_task  # noqa: E402
from sandbox.process import ProcessSandbox  # noqa: E402
from wire.jobs import EvalJob, Limits  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TECHNIQUES = {                       # name -> genome; every catalogue technique on its own, then combinations
    "no_cache": {"cache": False},
    "kv_cache": {"cache": True},
    "prompt_lookup": {"draft": "ngram", "ngram": 3, "draft_len": 8},
    "prompt_lookup_short": {"draft": "ngram", "ngram": 2, "draft_len": 4},
    "self_speculative": {"draft": "early_exit", "draft_len": 4},
    "parallel_drafting": {"draft": "ngram", "ngram": 3, "draft_len": 8, "branches": 3},
    "int8_dynamic": {"quant": True},
    "early_exit_confidence": {"exit_conf": 0.9},
    "lookup_with_fallback": {"draft": "ngram+early_exit", "ngram": 3, "draft_len": 8},
    "lookup_short_with_fallback": {"draft": "ngram+early_exit", "ngram": 2, "draft_len": 4},
    "lookup_int8": {"draft": "ngram", "ngram": 3, "draft_len": 8, "quant": True},
}
KEPT = ("speedup", "speedup_ci_low", "speedup_ci_high", "passes", "speedup_nocache", "cached_over_nocache",
        "tokens_per_second", "latency_ms_per_token", "candidate_median", "cached_median", "exact_match",
        "sequence_match", "mismatch_rate", "loglik_per_token", "reference_loglik_per_token", "judged_tokens")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fidelity", default="short", choices=("short", "full"))
    parser.add_argument("--cpus", type=float, default=1.0, help="threads per job (1: the least noisy on a shared box)")
    parser.add_argument("--passes", type=int, default=16,
                        help="timed passes per job at most (a job stops earlier once its interval is within +-5%%)")
    parser.add_argument("--only", nargs="*", help="technique names to run (default: all)")
    args = parser.parse_args()
    task = get_task("decode")
    spec = task.default_spec(max_repeats=args.passes, time_seconds=10_000)     # the passes decide, not a time budget
    sandbox = ProcessSandbox()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="archlab-decode-bench-") as scratch:
        for i, (name, genome) in enumerate(TECHNIQUES.items()):
            if args.only and name not in args.only:
                continue
            job = EvalJob(job_id=f"bench-{i}", candidate_id=name, source=render(genome, title=name), task=spec,
                          fidelity=args.fidelity, limits=Limits(wall_seconds=1200, memory_mb=4096, cpus=args.cpus))
            started, load = time.perf_counter(), os.getloadavg()[0]
            result = evaluate(sandbox, job, Path(scratch) / job.job_id)
            row = {"techniques": techniques(genome), "genome": genome, "status": result.status,
                   "wall_seconds": round(time.perf_counter() - started, 1), "load_average": round(load, 1),
                   **{k: round(result.metrics[k], 4) for k in KEPT if k in result.metrics}}
            if not result.ok:
                row["message"] = result.message[:300]
            rows[name] = row
            print(f"{name:28s} {row.get('speedup', float('nan')):5.2f}x "
                  f"[{row.get('speedup_ci_low', float('nan')):.2f}, {row.get('speedup_ci_high', float('nan')):.2f}] "
                  f"match {row.get('exact_match', float('nan')):.3f} {result.status}", file=sys.stderr)
    lossless = {n: r for n, r in rows.items() if r.get("mismatch_rate") == 0.0 and "speedup" in r}
    best = max(lossless, key=lambda n: lossless[n]["speedup"]) if lossless else None
    tied = sorted(n for n, r in lossless.items() if n != best and r["speedup_ci_high"] >= lossless[best]["speedup_ci_low"]
                  ) if best else []
    report = {"benchmark": "decode_techniques", "fidelity": args.fidelity, "cpus_per_job": args.cpus,
              "timing": "paired: candidate and cached greedy alternate pass by pass on the same prompts, each pass in "
                        "fresh processes; speed-up = median of per-pass ratios, interval = signed-rank ~95%",
              "spec": {k: spec.data[k] for k in ("prompt_len", "max_new_tokens", "max_repeats", "weights_sha256",
                                                  "train_loss", "model_d_model", "model_n_layers", "model_steps")},
              "prompts_per_pass": spec.budgets[args.fidelity].steps,
              "environment": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                              "machine": platform.machine()},
              "best_lossless": best, "overlapping_best": tied, "techniques": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "decode_techniques.json").write_text(json.dumps(report, indent=1))
    plotted = plot(rows, RESULTS / "decode_techniques.png")
    summary = (f"decode_techniques: best lossless technique {best}: {lossless[best]['speedup']:.2f}x cached greedy "
               f"[{lossless[best]['speedup_ci_low']:.2f}, {lossless[best]['speedup_ci_high']:.2f}] over "
               f"{lossless[best]['passes']:.0f} paired passes; intervals overlapping it: {', '.join(tied) or 'none'}"
               if best else "decode_techniques: no technique kept greedy's output")
    print(summary + f"; {len(rows)} techniques" + ("; plot written" if plotted else "; no matplotlib, no plot"))
    return 0


def plot(rows: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n, r in rows.items() if "speedup" in r]
    values = [rows[n]["speedup"] for n in names]
    errors = [[rows[n]["speedup"] - rows[n]["speedup_ci_low"] for n in names],
              [rows[n]["speedup_ci_high"] - rows[n]["speedup"] for n in names]]
    colours = ["tab:green" if rows[n]["mismatch_rate"] == 0.0 else "tab:orange" for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, values, xerr=errors, color=colours)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("speed-up vs cached greedy, paired ~95% interval (green: lossless; orange: lossy)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


if __name__ == "__main__":
    sys.exit(main())
