"""The job of a task whose candidate is a model (`Task.run_in_sandbox`'s default), inside the sandbox.

It builds the candidate's model (`evaluators.fidelities`), checks it, and by fidelity computes
its functional hash (`evaluators.funchash`), its zero-cost proxies (`evaluators.proxies`), its
latency and memory (`evaluators.bench`), or trains it and predicts the held-out inputs. What it
does not do: score the predictions (the host does, `evaluators.grading`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from evaluators.bench import run_bench
from evaluators.fidelities import build, check, heldout_predictions, load_candidate, train
from evaluators.funchash import functional_hash
from evaluators.proxies import compute_proxies
from evaluators.sandbox_output import SandboxOutput
from wire.task import SCREENING, TRAINING, TaskSpec

if TYPE_CHECKING:
    from evaluators.tasks.base import Task


def run_model_job(task: Task, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path,
                  device: torch.device) -> SandboxOutput:
    """One job of a task whose candidate is a model (`Task.run_in_sandbox`'s default): `check` always, then the
    functional hash (`check`, `proxy`), the zero-cost proxies (`proxy`), latency and memory (`bench`), or training
    and raw predictions on the held-out inputs (`short`, `full`)."""
    out = SandboxOutput()
    module = load_candidate(inputs_dir / "candidate.py", entry=task.entry)
    model = build(module, spec, seed, task.entry)
    out.metrics.update(check(task, spec, model, device))
    if fidelity in SCREENING:
        out.functional_hash = functional_hash(module, task, spec, device)
    if fidelity == "proxy":
        out.metrics.update(compute_proxies(task, spec, lambda: build(module, spec, seed, task.entry), device))
    elif fidelity == "bench":
        metrics, bench_env = run_bench(task, spec, build(module, spec, seed, task.entry), device)
        out.metrics.update(metrics)
        out.environment.update(bench_env)
    elif fidelity in TRAINING:
        instance = spec.at(fidelity)                    # the task instance this fidelity trains on
        model = build(module, instance, seed, task.entry)   # train from the same fresh init
        trained = train(task, instance, model, spec.budgets[fidelity], seed, device)
        out.curve = trained.pop("curve")
        out.metrics.update(trained)
        inputs = {p.stem.removeprefix("heldout_"): np.load(p, allow_pickle=False)
                  for p in sorted(inputs_dir.glob("heldout_*.npy"))}
        out.predictions = heldout_predictions(task, model, inputs)
    return out
