"""Helpers for the evaluator tests: run a source string for any task spec in the real process sandbox."""
from __future__ import annotations

import functools
import itertools
import types
from pathlib import Path

from evaluators.harness import evaluate
from wire.jobs import EvalJob, EvalResult, Limits
from sandbox.process import ProcessSandbox

_ids = itertools.count()


@functools.cache
def _sandbox() -> ProcessSandbox:
    return ProcessSandbox()


def run_job(tmp_path: Path, source: str, spec, fidelity: str = "check", items=None, **limits) -> EvalResult:
    """Evaluate `source` on `spec` at `fidelity` in a process sandbox under `tmp_path` (`items`: a suite subset)."""
    job = EvalJob(job_id=f"e{next(_ids)}", candidate_id="cand", source=source, task=spec, fidelity=fidelity,
                  limits=Limits(**{"wall_seconds": 90, "memory_mb": 2048, "cpus": 1, **limits}), items=items)
    return evaluate(_sandbox(), job, tmp_path / job.job_id)


def load_source(source: str, name: str = "candidate_under_test") -> types.ModuleType:
    """`source` as a module, in-process (for checks that need no sandbox)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


# a small CNN for digits that honours the vision contract
DIGITS_CNN = '''
import torch
import torch.nn as nn


def build_model(spec):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, spec.num_classes))
'''
