"""Reference candidates shipped with archlab, as plain modules honouring the sequence contract.

- `softmax_attention`: causal softmax attention (the recall reference);
- `linear_attention`: causal linear attention with an elu+1 feature map (cheap, weaker recall);
- `mlp_only`: no sequence mixing at all, so it cannot recall: the floor.

Each module's `CONFIG` is the offline engine's genome for it, so the engine can mutate a
baseline like any other candidate.
"""
from __future__ import annotations

import ast
from importlib import resources

NAMES = ("softmax_attention", "linear_attention", "mlp_only")


def baseline_source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.py").read_text()


def config_of(source: str) -> dict:
    """The literal `CONFIG = {...}` of a module, without running it."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONFIG" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError("module has no CONFIG literal")


BASELINES: dict[str, tuple[dict, str]] = {
    name: (config_of(baseline_source(name)), baseline_source(name)) for name in NAMES
}
