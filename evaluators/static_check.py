"""A static look at candidate source before anything runs: syntax, the contract's entry point, and imports.

This is a filter for the research loop, not a security boundary (the sandbox is): it turns
the common mistakes into precise, cheap messages and keeps obviously out-of-scope code
(shells, sockets, native calls) from reaching a sandbox at all.
"""
from __future__ import annotations

import ast

ALLOWED_IMPORTS = {"torch", "math", "typing", "dataclasses", "functools", "itertools", "collections",
                   "einops", "numpy", "__future__", "abc", "enum"}
FORBIDDEN_CALLS = {"exec", "eval", "compile", "open", "__import__", "breakpoint", "input", "globals", "setattr"}
MAX_SOURCE_BYTES = 200_000


ENTRY_POINTS = {"build_model": "build_model(spec) function returning an nn.Module",
                "generate": "generate(model, prompt_ids, max_new_tokens) function returning token ids"}


def static_problems(source: str, entry: str = "build_model") -> list[str]:
    """Every problem found, each as an actionable sentence; empty when the module looks fine. `entry` is the
    contract's top-level function (`generate` for decoding tasks)."""
    if len(source.encode()) > MAX_SOURCE_BYTES:
        return [f"the module is {len(source.encode())} bytes, over the {MAX_SOURCE_BYTES} limit"]
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        return [f"syntax error at line {exc.lineno}: {exc.msg}" + (f": {line}" if line else "")]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name.split(".")[0] not in ALLOWED_IMPORTS:
                problems.append(f"line {node.lineno}: import of {name!r} is not allowed; candidates may import "
                                f"only {', '.join(sorted(ALLOWED_IMPORTS - {'__future__'}))}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"line {node.lineno}: call to {node.func.id}() is not allowed in a candidate")
        if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in (
                "__init__", "__name__", "__class__", "__call__", "__doc__"):
            problems.append(f"line {node.lineno}: access to {node.attr} is not allowed in a candidate")
    if not any(isinstance(n, ast.FunctionDef) and n.name == entry for n in tree.body):
        problems.append(f"the module defines no top-level {ENTRY_POINTS.get(entry, entry)}")
    return problems
