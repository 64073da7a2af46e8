"""Host side of an evaluation: lay out the job, run it in a sandbox, score what came back.

The trusted half of the grader lives here. Held-out targets are generated on the host and
never written into the job directory; the sandbox returns raw predictions, which are
validated (file size, dtype, exact shape, finite values) before the task's `score` turns
them into the quality metric, and the host's metrics replace any of the same name the
sandbox reported. A candidate that writes its own report, patches `json` or `torch`, or
fakes its timer still gets the accuracy its predictions earn. A task with a `judge`
(decode) lays out its own inputs (`prepare`) and judges what came back itself, with the
job's wall time as the host measured it.

Held-out data out of reach (`evaluators.heldout`), for every task, shipped or not: before a
held-out set leaves the host, the task must pass `heldout.check_rule` (its targets depend
on the host's secret, or it names the files they are read from); the job then runs with
those files hidden (`Limits.hidden_paths`), and only in a sandbox that can hide them and
the home directory the secret lives in (capabilities `hidden_paths`, `hidden_home`).
Otherwise the job is not run: status `sandbox_error`, saying which backend to use.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from evaluators import heldout
from evaluators.grading import score_predictions
from evaluators.tasks import TASK_FILE, is_file_ref, task_of
from sandbox.base import Sandbox, failure, write_job
from wire.jobs import EvalJob, EvalResult
from wire.task import TRAINING

TRAINING_FIDELITIES = TRAINING


def evaluate(sandbox: Sandbox, job: EvalJob, jobdir: Path) -> EvalResult:
    """Run `job` in `sandbox` under `jobdir` and return its result with host-computed metrics."""
    task = task_of(job.task)
    hidden = task.host_only_paths(job.task)
    if hidden:
        job = job.model_copy(update={"limits": job.limits.model_copy(
            update={"hidden_paths": tuple(sorted({*job.limits.hidden_paths, *hidden}))})})
    missing = _missing_protection(sandbox, job, hidden)
    if missing:
        return failure(job, "sandbox_error", missing)
    write_job(job, jobdir)
    if is_file_ref(job.task.ref):       # the runner loads a file task from its copy (`evaluators.tasks.task_in_job`)
        (jobdir / "inputs" / TASK_FILE).write_bytes(Path(job.task.ref.rpartition(":")[0]).read_bytes())
    for name, array in task.sandbox_files(job.task).items():   # training data only, never held-out targets
        np.save(jobdir / "inputs" / f"train_{name}.npy", array, allow_pickle=False)
    judge = getattr(task, "judge", None)      # a task whose host judges a procedure, not predictions (decode)
    if job.fidelity in TRAINING_FIDELITIES:   # the integrity rule holds for every task, a judging one too
        heldout.check_rule(task, job.task.at(job.fidelity))
    if judge is not None:
        kept = task.prepare(job, jobdir)      # inputs the sandbox may see; what it must not see stays here
        started = time.perf_counter()
        result = sandbox.run(job, jobdir)
        return judge(job, result, jobdir, kept, time.perf_counter() - started)
    targets = None
    if job.fidelity in TRAINING_FIDELITIES:
        instance = job.task.at(job.fidelity)
        inputs, targets = task.heldout(instance, heldout.machine_secret())
        for name, array in inputs.items():
            np.save(jobdir / "inputs" / f"heldout_{name}.npy", array, allow_pickle=False)
    result = sandbox.run(job, jobdir)
    if result.status != "ok" or targets is None:
        return result
    return score_predictions(task, job, result, jobdir / "out" / "predictions.npy", targets)


def _missing_protection(sandbox: Sandbox, job: EvalJob, hidden: tuple[str, ...]) -> str:
    """Why `sandbox` cannot keep this job's held-out data out of reach, or "" when it can."""
    if job.fidelity not in TRAINING_FIDELITIES:
        return ""
    capabilities = getattr(sandbox, "capabilities", frozenset())
    needed = {"hidden_home"} | ({"hidden_paths"} if hidden else set())
    lacking = sorted(needed - set(capabilities))
    if not lacking:
        return ""
    return (f"the {getattr(sandbox, 'name', 'this')} sandbox cannot keep held-out data out of the candidate's reach "
            f"here (it lacks {', '.join(lacking)}: no mount namespaces on this machine), so the job was not run; "
            "use --sandbox docker, or a machine where unprivileged user namespaces are allowed")
