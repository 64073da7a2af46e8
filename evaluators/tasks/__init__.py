"""Finding tasks: the shipped ones, those other packages install, and those given as a file.

A task is named in three ways (`get_task`):
- a shipped task by its name (`mqar`, `charlm`, `digits`, `decode`, `nb201`, `lm`);
- an installed one by the name of its entry point in the group `archlab.tasks`
  (`[project.entry-points."archlab.tasks"] mytask = "mypkg.task:MyTask"` in its pyproject.toml);
- a file, as `path/to/task.py:ClassName` (the file is imported under its own module name).

What is found is an instance of a `Task` subclass (`evaluators.tasks.base`), made once per
process. Nothing here imports torch: the shipped task modules import it when they need it,
so settings can be validated and `archlab tasks` listed cheaply. What this module does not
do: decide anything about a task (that is the task's own business).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from evaluators.tasks.base import Task

ENTRY_POINT_GROUP = "archlab.tasks"
SHIPPED: dict[str, str] = {"mqar": "evaluators.tasks.mqar:MQAR", "charlm": "evaluators.tasks.charlm:CharLM",
                           "digits": "evaluators.tasks.digits:Digits", "decode": "evaluators.tasks.decode:Decode",
                           "nb201": "evaluators.tasks.nb201:NB201", "lm": "evaluators.tasks.lm:LM"}
_loaded: dict[str, Task] = {}


class UnknownTask(KeyError):
    """No task goes by that name, or the file given is not a task; the message says which tasks exist or what the
    file lacks."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TaskSource:
    """Where a task comes from: its reference, `shipped` / `installed (dist)` / `file`, and the import string."""

    ref: str
    origin: str
    target: str


def is_file_ref(ref: str) -> bool:
    """Whether `ref` names a task in a file (`path.py:Class`) rather than by name."""
    path, sep, _ = ref.rpartition(":")
    return bool(sep) and path.endswith(".py")


def sources() -> list[TaskSource]:
    """Every task found by name: shipped ones, then installed entry points (a shipped name wins)."""
    found = [TaskSource(name, "shipped", target) for name, target in SHIPPED.items()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in SHIPPED:
            dist = getattr(getattr(ep, "dist", None), "name", None)
            found.append(TaskSource(ep.name, f"installed ({dist})" if dist else "installed", ep.value))
    return found


def known_names() -> list[str]:
    return sorted(s.ref for s in sources())


def get_task(ref: str) -> Task:
    """The task `ref` names (a name, an entry point's name or `path.py:Class`); UnknownTask says what exists."""
    if ref in _loaded:
        return _loaded[ref]
    if is_file_ref(ref):
        path, _, attr = ref.rpartition(":")
        absolute = f"{Path(path).expanduser().resolve()}:{attr}"
        task = _loaded.get(absolute) or _instance(_from_file(absolute), ref)
        task.ref = absolute
        _loaded[absolute] = task
    else:
        source = next((s for s in sources() if s.ref == ref), None)
        by_name = next((t for t in _loaded.values() if t.ref and t.name == ref), None)
        if source is None and by_name is not None:     # a file task loaded in this process, named as its records do
            return by_name
        if source is None:
            raise UnknownTask(f"unknown task {ref!r}; known tasks: {', '.join(known_names())} (or give a file as "
                              "path/to/task.py:ClassName)")
        task = _instance(_import(source.target, ref), ref)
    _loaded[ref] = task
    return task


def task_of(spec) -> Task:
    """The task a `TaskSpec` belongs to (by its `ref` when it came from a file, else by its name)."""
    return get_task(spec.ref or spec.name)


TASK_FILE = "task_module.py"     # a file task's module, as the harness copies it into a job's inputs


def task_in_job(spec, inputs_dir: Path) -> Task:
    """Sandbox side: the task of a job; a task given as a file is loaded from the copy in the job's inputs (the
    user's path is not visible inside the sandbox)."""
    if is_file_ref(spec.ref):
        return get_task(f"{Path(inputs_dir) / TASK_FILE}:{spec.ref.rpartition(':')[2]}")
    return get_task(spec.name)


def _import(target: str, ref: str):
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - an installed package may fail in any way; say which and how
        raise UnknownTask(f"task {ref!r}: its module {module_name!r} cannot be imported: "
                          f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part, None)
        if obj is None:
            raise UnknownTask(f"task {ref!r}: {module_name!r} defines no {attr!r}")
    return obj


def _from_file(ref: str):
    path_text, _, attr = ref.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UnknownTask(f"task {ref!r}: there is no file {path}")
    name = f"archlab_task_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a user's file may fail in any way; say so, naming it
        del sys.modules[name]
        raise UnknownTask(f"task {ref!r}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        classes = sorted(n for n, v in vars(module).items()
                         if isinstance(v, type) and issubclass(v, Task) and v is not Task and v.__module__ == name)
        raise UnknownTask(f"task {ref!r}: {path} defines no {attr!r}"
                          + (f"; the tasks it defines: {', '.join(classes)}" if classes else
                             "; it defines no subclass of evaluators.tasks.base.Task"))
    return obj


def _instance(obj, ref: str) -> Task:
    if isinstance(obj, type) and issubclass(obj, Task):
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        if missing:
            raise UnknownTask(f"task {ref!r}: {obj.__name__} does not define {', '.join(missing)} "
                              "(see evaluators.tasks.base.Task)")
        for attr in ("name", "metric"):
            if not isinstance(getattr(obj, attr, None), str):
                raise UnknownTask(f"task {ref!r}: {obj.__name__} sets no `{attr}` string")
        return obj()
    if isinstance(obj, Task):
        return obj
    raise UnknownTask(f"task {ref!r}: {obj!r} is not a subclass of evaluators.tasks.base.Task")
