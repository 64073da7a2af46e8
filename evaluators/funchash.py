"""Functional hashing: one hash for every candidate that computes the same function.

After "Unified Functional Hashing in Automatic Machine Learning" (Gillard et al., 2023): two
candidates are the same if, built from the same seed, they have the same parameter count and
give the same outputs on the same fixed inputs. Source-level differences that do not change
the function (identifiers, formatting, comments, the order of top-level definitions) collide;
a different mixer, width or initialisation scale does not. The search uses it to evaluate a
function once, however many ways it is written.

How: seed `HASH_SEED`, `build_model(spec)`, eval mode, the task's `example_input` for fixed
seeds (the same for every candidate of a task), outputs cast to float64, values within
`FLUSH` of zero set to exactly 0 (so -0.0, 1e-12 and 0 agree), every value rounded to
`DIGITS` significant digits; then sha256 over the parameter count, the output shape and the
rounded values. Runs inside the sandbox (the runner adds it to `check` and `proxy` reports;
the host copies it into `EvalResult.environment["functional_hash"]`).

What it does not promise: two implementations of one function whose float rounding differs
by more than 4 significant digits on some output (a different summation order in a long
reduction can, rarely) hash apart; and two functions that agree on the fixed inputs to 4
digits hash together. Models that change the global RNG state at build time are hashed as
they are built, from the same seed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
from types import ModuleType

import numpy as np
import torch

from evaluators.fidelities import build, count_params
from wire.task import TaskSpec

if TYPE_CHECKING:
    from evaluators.tasks.base import Task

HASH_SEED = 1234         # build seed, fixed so the hash does not depend on the job's seed
INPUT_SEEDS = (11, 12)   # example inputs hashed (two batches of 2)
DIGITS = 4               # significant digits kept
FLUSH = 1e-6             # |value| below this counts as zero


def round_significant(values: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """`values` rounded to `digits` significant digits, with near-zeros flushed to 0."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    keep = np.abs(values) >= FLUSH
    exponent = np.floor(np.log10(np.abs(values[keep])))
    scale = 10.0 ** (digits - 1 - exponent)
    out[keep] = np.round(values[keep] * scale) / scale
    return out


def functional_hash(module: ModuleType, task: Task, spec: TaskSpec, device: torch.device) -> str:
    """64 hex characters: sha256 of (parameter count, output shapes, rounded outputs on fixed inputs)."""
    model = build(module, spec, HASH_SEED).to(device).eval()
    digest = hashlib.sha256()
    digest.update(f"params={count_params(model)};".encode())
    with torch.no_grad():
        for seed in INPUT_SEEDS:
            y = model(task.example_input(spec, 2, seed=seed).to(device))
            values = round_significant(y.detach().double().cpu().numpy())
            digest.update(f"shape={tuple(values.shape)};".encode())
            digest.update(values.tobytes())
    return digest.hexdigest()
