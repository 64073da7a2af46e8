"""Helpers for `decode` task tests: one small spec for the whole session, and a way to run a decoding module.

The spec's data options are small (short prompts, few tokens, few passes) so a timed job takes
seconds; they do not enter the model's training recipe, so the model is the one every `decode`
run on this machine uses, trained once and cached on disk (`evaluators.decoding.cached_weights`).
"""
from __future__ import annotations

import itertools
from pathlib import Path

from evaluators.harness import evaluate
from evaluators.tasks import get_task
from wire.jobs import EvalJob, EvalResult, Limits

TINY_DECODE = {"prompt_len": 32, "max_new_tokens": 24, "check_new_tokens": 8, "prompts": 2, "full_prompts": 2,
               "max_repeats": 8, "time_seconds": 2}
_ids = itertools.count()


def decode_spec():
    return get_task("decode").default_spec(**TINY_DECODE)


def run_decode(spec, source: str, sandbox, directory: Path, fidelity: str = "check", **limits) -> EvalResult:
    """Evaluate a decoding module at `fidelity` in `sandbox`; the job directory is kept under `directory`."""
    job = EvalJob(job_id=f"d{next(_ids)}", candidate_id="cand", source=source, task=spec, fidelity=fidelity,
                  limits=Limits(**{"wall_seconds": 90, "memory_mb": 2048, "cpus": 1, **limits}))
    return evaluate(sandbox, job, directory / job.job_id)
