"""What a run's settings resolve to, once: its objective and its task's spec.

Kept apart from `archlab.session` (which wires a run and imports torch) so that the run store
and the CLI's reading commands can score a recorded run without either.
"""
from __future__ import annotations

from archlab.settings import Settings
from evaluators.fitness import Objective
from evaluators.tasks import get_task


def make_objective(settings: Settings) -> Objective:
    """The run's objective: the user's, else the task's own metric; the direction the user set, else the task's
    for that metric (`Task.higher_is_better_for`)."""
    o, task = settings.objective, get_task(settings.task)
    metric = o.metric or task.metric
    direction = o.higher_is_better if "higher_is_better" in o.model_fields_set else task.higher_is_better_for(metric)
    return Objective(metric=metric, higher_is_better=direction,
                     limits=dict(o.limits), costs=tuple(o.costs))


def task_spec(settings: Settings):
    task = get_task(settings.task)
    return task.default_spec(**dict(settings.task_options)).model_copy(update={"seed": settings.seed})
