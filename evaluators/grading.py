"""The host's grading of a job's predictions: validated, then scored by the task, the host's metrics winning.

Host side only (the sandbox side may not import it: `make lint`). `evaluators.harness` calls it
for every task that returns predictions; a task that judges its own jobs (`Task.judge`) may too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wire.jobs import EvalJob, EvalResult

PREDICTIONS_MAX_BYTES = 64 * 1024 * 1024


def score_predictions(task, job: EvalJob, result: EvalResult, path: Path, targets: np.ndarray) -> EvalResult:
    """The host's verdict on a job's predictions file: validated (size, plain array, float, the task's exact shape,
    finite), then scored by the task; the host's metrics replace any the sandbox reported. A judging task
    (`Task.judge`) may call this for its own predictions."""
    problem = None
    predictions = None
    instance = job.task.at(job.fidelity)
    expected = task.expected_prediction_shape(instance)
    if not path.is_file():
        problem = "the job finished but wrote no held-out predictions"
    elif path.stat().st_size > PREDICTIONS_MAX_BYTES:
        problem = f"predictions.npy is {path.stat().st_size} bytes, over the limit"
    else:
        try:
            predictions = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            problem = f"predictions.npy could not be read as a plain array: {exc}"
    if predictions is not None and problem is None:
        if predictions.dtype.kind != "f":
            problem = f"predictions have dtype {predictions.dtype}; expected floating point"
        elif tuple(predictions.shape) != expected:
            problem = f"predictions have shape {tuple(predictions.shape)}; expected {expected}"
        elif not np.isfinite(predictions).all():
            problem = "the trained model produced NaN or inf outputs on held-out inputs; stabilise training"
    if problem is not None:
        return result.model_copy(update={"status": "invalid", "message": f"{problem} (rule: the sandbox returns "
                                         "plain finite predictions of the task's shape, and the host scores them)"})
    metrics = {**result.metrics, **task.score(instance, predictions.astype(np.float64), targets)}   # the host's win
    return result.model_copy(update={"metrics": metrics})
