"""The task registry: every task archlab can evaluate, by name."""
from __future__ import annotations

from evaluators.tasks.base import Task
from evaluators.tasks.charlm import CharLM
from evaluators.tasks.decode import Decode
from evaluators.tasks.digits import Digits
from evaluators.tasks.mqar import MQAR

TASKS: dict[str, Task] = {"mqar": MQAR(), "charlm": CharLM(), "digits": Digits(), "decode": Decode()}


def get_task(name: str) -> Task:
    """The task called `name`, or a KeyError that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
