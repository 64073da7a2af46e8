"""MkDocs hook: the settings reference, generated at build time from the pydantic models in `archlab/settings.py`.

A page holding the line `<!-- settings-reference -->` gets, in its place, one table per section of
`archlab.settings.Settings` (the top-level fields first, then `[sandbox]`, `[executor]`, ...; a model
nested in a section, such as `[llm.prices."MODEL"]`, gets its own table): every field with its type and
bounds, its default, the environment variable that sets it, and its description. The description is the
field's `description=` where it has one, else the comment the source writes beside (or just above) the
field, which is where archlab's settings keep theirs; a field with neither fails the build, so a new
setting cannot go undocumented. It owns the rendering only: the models, their defaults and their
validation are `archlab.settings`'.
"""
from __future__ import annotations

import ast
import inspect
import io
import json
import logging
import textwrap
import tokenize
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

log = logging.getLogger("mkdocs.hooks.settings_reference")

MARKER = "<!-- settings-reference -->"
ENV_PREFIX = "ARCHLAB_"
_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "≤"))


def source_notes(model: type[BaseModel]) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation as the source writes it, the comment beside or just above it)."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    body = ast.parse(source).body[0]
    notes = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        beside = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and line not in code_lines:    # a comment block of its own, right above
            above.insert(0, comments[line])
            line -= 1
        annotation = ast.get_source_segment(source, node.annotation) or ""
        notes[node.target.id] = (annotation, " ".join(above + beside))
    return notes


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "unset"
    if isinstance(value, (Path, Enum)):
        return json.dumps(str(value.value if isinstance(value, Enum) else value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _type(annotation_text: str, field) -> str:
    text = annotation_text or getattr(field.annotation, "__name__", str(field.annotation))
    bounds = []
    for item in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                bounds.append(f"{sign} {getattr(item, attr)}")
    return f"`{text}`" + (f" ({', '.join(bounds)})" if bounds else "")


def _escape(text: str) -> str:
    """A table cell: `|` escaped outside code spans (inside them the tables extension leaves it alone)."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def section(title: str, model: type[BaseModel], env: str | None, fields: list[str] | None = None,
            missing: list[str] | None = None) -> tuple[str, list[tuple[str, type[BaseModel], str | None]]]:
    """One section's table, and the models nested in it (rendered as sections of their own)."""
    notes: dict[str, tuple[str, str]] = {}
    for klass in reversed(model.__mro__):          # a subclass's own notes win over its base's
        if issubclass(klass, BaseModel) and not klass.__module__.startswith("pydantic"):
            notes.update(source_notes(klass))
    doc = inspect.getdoc(model) if model.__doc__ else ""
    lines = [f"### `{title}`", ""]
    if doc and not doc.startswith(model.__name__ + "("):
        lines += [doc.split("\n\n")[0].replace("\n", " "), ""]
    lines += [f"Model: `{model.__module__}.{model.__qualname__}`.", "",
              "| setting | type | default | environment | what it does |", "| --- | --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel], str | None]] = []
    for name, field in model.model_fields.items():
        if fields is not None and name not in fields:
            continue
        annotation, comment = notes.get(name, ("", ""))
        description = field.description or comment
        if not description and missing is not None:
            missing.append(f"{title}.{name}")
        variable = f"`{env}{name.upper()}`" if env is not None else "–"
        lines.append(f"| `{name}` | {_escape(_type(annotation, field))} | {_escape(_default(field))} | {variable} "
                     f"| {_escape(description)} |")
        for sub in _models_in(field.annotation):
            key = f'{title.strip("[]")}.{name}'
            if typing.get_origin(field.annotation) in (dict, typing.Dict):
                nested.append((f'[{key}."KEY"]', sub, None))
            elif typing.get_origin(field.annotation) not in (None, typing.Union, types.UnionType):
                nested.append((f"[{key}[]]", sub, None))
    return "\n".join(lines), nested


def reference() -> str:
    from archlab.settings import Settings

    missing: list[str] = []
    top = [name for name, f in Settings.model_fields.items() if not _models_in(f.annotation)]
    text, pending = section("top level", Settings, ENV_PREFIX, top, missing)
    parts = [text]
    for name, field in Settings.model_fields.items():
        if name in top:
            continue
        (model,) = _models_in(field.annotation)
        pending.append((f"[{name}]", model, f"{ENV_PREFIX}{name.upper()}__"))
    while pending:
        title, model, env = pending.pop(0)
        text, more = section(title, model, env, None, missing)
        parts.append(text)
        pending = more + pending
    for name in missing:
        log.warning("setting %s has no description (a description= or a comment beside it)", name)
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
