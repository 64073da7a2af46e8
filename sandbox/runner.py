"""The in-sandbox runner: loads one candidate, runs one fidelity, writes a report.

Invoked as `python -m sandbox.runner JOB_JSON INPUTS_DIR OUT_DIR` by every backend (a child
process or a container). It imports only `evaluators`, `wire` and the standard library. Every fidelity
runs `check` first; then `check` and `proxy` add the functional hash (`evaluators.funchash`),
`proxy` the zero-cost proxies (`evaluators.proxies`), `bench` latency and memory
(`evaluators.bench`), and `short`/`full` train. It writes `OUT_DIR/report.json` (status,
metrics, message, environment, functional hash) and, for training fidelities,
`OUT_DIR/predictions.npy` (raw model outputs on held-out inputs). Nothing it writes is
trusted: the host validates the report's schema and ranges and computes quality metrics
from the predictions itself.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

# bound before the candidate is imported, so a candidate that patches json.dumps or the timer
# does not change what the runner writes (the host still trusts none of it beyond validation)
_dumps = json.dumps
_clock = time.perf_counter
_replace = os.replace

TRACE_CHARS = 3000  # traceback tail kept in a report


def _candidate_trace(exc: BaseException) -> str:
    """The traceback, trimmed to the frames a coder can fix plus the error line."""
    lines = traceback.format_exception(exc)
    text = "".join(lines)
    if "candidate.py" in text:
        frames = [ln for ln in lines[1:] if "candidate.py" in ln]
        text = "".join(frames[-4:]) + lines[-1]
    return text[-TRACE_CHARS:]


def _write_report(out: Path, report: dict) -> None:
    tmp = out / "report.json.tmp"
    tmp.write_text(_dumps(report))
    _replace(tmp, out / "report.json")


def main(job_path: str, inputs_dir: str, out_dir: str) -> int:
    import numpy as np
    import torch

    from evaluators import fidelities
    from evaluators.bench import run_bench
    from evaluators.funchash import functional_hash
    from evaluators.proxies import compute_proxies
    from wire.task import TaskSpec
    from evaluators.tasks import get_task

    out = Path(out_dir)
    job = json.loads(Path(job_path).read_text())
    spec = TaskSpec.model_validate(job["task"])
    fidelity = job["fidelity"]
    seed = int(job.get("seed", 0))
    limits = job.get("limits", {})
    torch.set_num_threads(max(1, int(limits.get("cpus", 1))))
    use_cuda = int(limits.get("gpus", 0)) > 0 and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    environment = {"device": str(device), "torch": torch.__version__, "python": sys.version.split()[0]}
    if use_cuda:
        environment["gpu_name"] = torch.cuda.get_device_name(0)
    report: dict = {"status": "ok", "metrics": {}, "message": "", "environment": environment, "curve": []}
    task = get_task(spec.name)
    files = {p.stem.removeprefix("train_"): np.load(p, allow_pickle=False)
             for p in sorted(Path(inputs_dir).glob("train_*.npy"))}
    task.attach(spec, files)   # training data the host wrote (a corpus, a dataset); none for generated tasks
    started = _clock()
    try:
        module = fidelities.load_candidate(Path(inputs_dir) / "candidate.py")
        model = fidelities.build(module, spec, seed)
        report["metrics"].update(fidelities.check(task, spec, model, device))
        if fidelity in ("check", "proxy"):
            report["functional_hash"] = functional_hash(module, task, spec, device)
        if fidelity == "proxy":
            report["metrics"].update(compute_proxies(task, spec, lambda: fidelities.build(module, spec, seed), device))
        elif fidelity == "bench":
            metrics, bench_env = run_bench(task, spec, fidelities.build(module, spec, seed), device)
            report["metrics"].update(metrics)
            environment.update(bench_env)
        elif fidelity in ("short", "full"):
            instance = spec.at(fidelity)                    # the task instance this fidelity trains on
            model = fidelities.build(module, instance, seed)   # train from the same fresh init
            trained = fidelities.train(task, instance, model, spec.budgets[fidelity], seed, device)
            report["curve"] = trained.pop("curve")
            report["metrics"].update(trained)
            inputs = {p.stem: np.load(p, allow_pickle=False) for p in sorted(Path(inputs_dir).glob("heldout_*.npy"))}
            inputs = {k.removeprefix("heldout_"): v for k, v in inputs.items()}
            predictions = fidelities.heldout_predictions(task, model, inputs)
            np.save(out / "predictions.npy", predictions, allow_pickle=False)
    except fidelities.ContractViolation as exc:
        report.update(status="invalid", message=str(exc))
    except fidelities.Diverged as exc:
        report.update(status="error", message=str(exc))
    except SyntaxError as exc:
        report.update(status="invalid", message=f"syntax error at line {exc.lineno}: {exc.msg}: {exc.text or ''}".strip())
    except MemoryError:
        report.update(status="oom", message="the candidate ran out of memory (MemoryError); use a smaller model, "
                                            "shorter intermediate tensors, or chunk the computation")
    except Exception as exc:  # noqa: BLE001 - any candidate failure becomes a classified report
        text = str(exc)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            report.update(status="oom", message=f"the candidate ran out of memory: {text[:300]}; "
                                                "use a smaller model or chunk the computation")
        else:
            report.update(status="error", message=f"{type(exc).__name__}: {text[:500]}")
        report["traceback"] = _candidate_trace(exc)
    report["timings"] = {"runner_seconds": _clock() - started}
    _write_report(out, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: python -m sandbox.runner JOB_JSON INPUTS_DIR OUT_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
