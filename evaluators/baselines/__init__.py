"""Reference candidates shipped with archlab, as plain modules honouring the sequence contract.

- `softmax_attention`: causal softmax attention (the recall reference);
- `linear_attention`: causal linear attention with an elu+1 feature map (cheap, weaker recall);
- `mlp_only`: no sequence mixing at all, so it cannot recall: the floor.

Each module's `CONFIG` is the offline engine's genome for it, so the engine can mutate a
baseline like any other candidate.

The language-model references (`lm_baselines`, for the `lm` task) are written by hand, not by
the renderer: a modern transformer (`lm_transformer`), gated linear attention in chunks
(`lm_gla`) and a Mamba-2 selective SSM in chunks (`lm_mamba`). Each reads its width, depth and
heads from the task's rung (`spec.data`), so one module serves every rung of the ladder; their
`CONFIG` is not a genome of the offline engine's space.
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


# each hand-written reference's nearest genome in the block catalogue (`agents.offline.blocks`): what the offline
# engine changes when it takes the reference as a parent (their own CONFIG is not a genome of that space)
LM_GENOMES: dict[str, dict] = {
    "lm_transformer": {"mixer": "softmax", "norm": "rmsnorm", "ffn": "glu", "ffn_mult": 4},
    "lm_gla": {"mixer": "gated_linear", "norm": "rmsnorm", "ffn": "glu", "ffn_mult": 4, "output_gate": True},
    "lm_mamba": {"mixer": "gated_linear", "norm": "rmsnorm", "ffn": "glu", "ffn_mult": 2, "output_gate": True,
                 "short_conv": 4},
}
LM_NAMES = tuple(LM_GENOMES)


def lm_baselines() -> dict[str, tuple[dict, str]]:
    """The `lm` task's references: name -> (nearest catalogue genome, module source)."""
    return {name: (dict(LM_GENOMES[name]), baseline_source(name)) for name in LM_NAMES}
