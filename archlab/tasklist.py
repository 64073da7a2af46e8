"""What `archlab tasks` shows: every task archlab can find, read from its declarations, or the error that stops it.

Each task found (shipped, installed through the entry point group `archlab.tasks`, or given
as a file) becomes a `TaskEntry`: the loaded task, whose class-level declarations (summary,
metric, contract, options and their defaults, search space) are read without building a
spec, so listing imports no torch and makes no data; or the error that kept it from loading
(a broken entry point, a file that fails to import), so one bad plug-in never hides the
others. What this does not do: print (the CLI decides what people see), or judge a task
beyond loading it (that happens when a run or `archlab eval` builds its spec).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from evaluators.tasks import UnknownTask, get_task, is_file_ref, sources
from evaluators.tasks.base import Task


@dataclass(frozen=True)
class TaskEntry:
    ref: str                    # how to name it: `--task REF` or `task = "REF"` in lab.toml
    origin: str                 # shipped / installed (dist) / file
    task: Task | None = None
    error: str = ""             # why it could not be loaded (then `task` is None)


@dataclass(frozen=True)
class OptionRow:
    name: str
    type: str
    default: str                # as lab.toml's [task_options] would spell it
    description: str


def entries(files: Sequence[str] = ()) -> list[TaskEntry]:
    """Every task found by name (shipped, then installed), then each task file in `files`, loaded or with its error."""
    found = [_load(source.ref, source.origin) for source in sources()]
    return found + [_load(ref, "file") for ref in files if ref not in {e.ref for e in found}]


def entry(ref: str) -> TaskEntry:
    """One task by any reference; UnknownTask (listing what exists) when no task goes by that name."""
    if is_file_ref(ref):
        return _load(ref, "file")
    source = next((s for s in sources() if s.ref == ref), None)
    if source is None:
        get_task(ref)           # raises UnknownTask with the names that exist
    return _load(ref, source.origin if source else "file")


def _load(ref: str, origin: str) -> TaskEntry:
    try:
        return TaskEntry(ref, origin, task=get_task(ref))
    except UnknownTask as exc:
        return TaskEntry(ref, origin, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - an installed package's module may raise anything on import; list it
        return TaskEntry(ref, origin, error=f"task {ref!r} cannot be loaded: {type(exc).__name__}: {exc}")


def options(task: Task) -> list[OptionRow]:
    """The task's options (`Task.Options`), each with its type, default and description."""
    rows = []
    for name, field in task.Options.model_fields.items():
        default = "(required)" if field.is_required() else toml_value(field.get_default(call_default_factory=True))
        rows.append(OptionRow(name, _type_name(field.annotation), default, field.description or ""))
    return rows


def toml_value(value: Any) -> str:
    """`value` as lab.toml spells it; None has no TOML spelling: the option is left out (unset)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def _type_name(annotation: Any) -> str:
    name = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return name or str(annotation).replace("typing.", "")


def offline(task: Task) -> str:
    """Whether the offline engine can search this task (it searches the task's declared search space)."""
    return f"yes ({task.search_space})" if task.search_space else "no (use --llm openai)"


def space_text(task: Task) -> str:
    """The task's search space in words, or why it cannot be loaded (it is imported only here, for one task)."""
    if not task.search_space:
        return "none: the offline engine cannot propose candidates; use --llm openai, or score modules with archlab eval"
    from agents.spaces import UnknownSpace, get_space
    try:
        return f"{task.search_space}: {get_space(task.search_space).description}"
    except UnknownSpace as exc:
        return f"{task.search_space}: cannot be loaded: {exc}"
