"""Prompt templates: package data in `agents/prompts/*.md`, loaded with importlib.resources.

A template is plain text with `$name` placeholders (`string.Template`). A line
`==== user ====` splits it into the system message (above) and the user message (below);
a template without it is a single user message. A placeholder with no value is a
programming error and raises `KeyError`: prompts never go out half-filled.
"""
from __future__ import annotations

import functools
from importlib import resources
from string import Template

SPLIT = "==== user ===="


@functools.cache
def template(name: str) -> tuple[str, str]:
    """(system, user) text of `agents/prompts/<name>.md`; system is "" when the file has no split line."""
    text = resources.files("agents").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8")
    if SPLIT in text:
        system, user = text.split(SPLIT, 1)
        return system.strip(), user.strip()
    return "", text.strip()


def render(name: str, **values: object) -> list[dict[str, str]]:
    """The chat messages of a template with every placeholder filled."""
    system, user = template(name)
    values = {k: str(v) for k, v in values.items()}
    messages = []
    if system:
        messages.append({"role": "system", "content": Template(system).substitute(values)})
    messages.append({"role": "user", "content": Template(user).substitute(values)})
    return messages


def user_text(name: str, **values: object) -> str:
    """The user part of a template alone, for a follow-up message in a conversation."""
    return render(name, **values)[-1]["content"]
