"""The task's search space as a menu for the planner: name a change of the parent's genome, the renderer writes the code.

Where the task declares a search space with a renderer (`Task.search_space`, `agents.spaces`)
and the parent has a genome, the planner is shown the parent's genome and the single changes
the space's own catalogue allows (the offline engine's `single_changes`), and may answer
`space_change: [{"gene": ..., "value": ...}]` instead of a change in words. `SpaceMenu.apply`
turns that answer into the child's genome, or into one sentence the model can act on (an
unknown gene, a value the space refuses, no change at all, a genome already proposed);
the engine's coder renders it (`renderer_for`). So even a model that cannot write code proposes
runnable candidates, and one that can still writes free-form code for changes outside the space.

What it does not do: choose among the options (the model does), or know which task or space
it serves: everything comes from the space's engine and renderer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import BaseModel, Field, WithJsonSchema, create_model

from agents.engine import PlanContext
from agents.llm.answers import GeneValue, SpacePlanAnswer
from agents.offline.engine import genome_hash
from agents.spaces import UnknownSpace, task_space
from evaluators.tasks import task_of

MENU_LINES = 24       # single changes listed in the planner's prompt (the catalogue may hold more)


@dataclass(frozen=True)
class SpaceMenu:
    space: str                                  # the space's name
    description: str
    parent_id: str
    genome: dict                                # the parent's genome, complete
    options: tuple[tuple[str, str, dict], ...]  # (change kind, detail, {gene: new value}) of each single change
    renderer: Callable[..., str]
    taken: tuple[tuple[str, str], ...] = ()     # (candidate id, or "" in flight, genome hash) of every genome proposed

    def text(self) -> str:
        """The planner's section on the space: the parent's genome and the changes its catalogue allows."""
        lines = [f"- ({kind}) {detail}: " + json.dumps([{"gene": g, "value": v} for g, v in changes.items()])
                 for kind, detail, changes in self.options[:MENU_LINES]]
        more = len(self.options) - MENU_LINES
        return (f"# The search space this task declares: {self.space}\n\n{self.description}.\n"
                f"Genome of {self.parent_id}: {json.dumps(self.genome, sort_keys=True)}\n"
                "Its catalogue's single changes, each as (change_kind) description: the space_change that names it\n"
                + "\n".join(lines) + (f"\n(and {more} more)" if more > 0 else "") + "\n\n"
                "To propose a change of this space (one of these, or several genes at once), put it in "
                "\"space_change\" as a list of {\"gene\": ..., \"value\": ...}: the lab writes the module from the "
                "genome, so it runs. For a change outside the space, give \"space_change\": [] and describe it in "
                "\"change\": a coder writes it.")

    def answer_schema(self) -> type[BaseModel]:
        """The planner's answer model for this menu. Its JSON schema lets `space_change` name only the space's genes,
        each with the parent's value or a value the catalogue offers for it, so an endpoint that turns the schema
        into a grammar (llama.cpp) cannot name a gene the space does not have; it reads answers as
        `SpacePlanAnswer` does (a value outside the schema still gets `apply`'s reason back)."""
        allowed: dict[str, list[Any]] = {gene: [value] for gene, value in self.genome.items()
                                         if isinstance(value, (str, int, float, bool))}
        for _, _, changes in self.options:
            for gene, value in changes.items():
                if gene in allowed and value not in allowed[gene]:
                    allowed[gene].append(value)
        items = [{"type": "object", "properties": {"gene": {"type": "string", "enum": [gene]},
                                                   "value": _enum(values)},
                  "required": ["gene", "value"], "additionalProperties": False}
                 for gene, values in sorted(allowed.items())]
        schema = {"type": "array", "items": {"anyOf": items}}
        return create_model("SpacePlanAnswer", __base__=SpacePlanAnswer,
                            space_change=(Annotated[list[GeneValue], WithJsonSchema(schema)],
                                          Field(default_factory=list)))

    def apply(self, changes: list[tuple[str, Any]]) -> tuple[dict | None, str]:
        """The child's genome from (gene, value) pairs, or None and the problem to send back."""
        genome = dict(self.genome)
        for gene, value in changes:
            if gene not in genome:
                return None, (f"space_change names the gene {gene!r}, which the space {self.space} does not have; "
                              f"its genes are {', '.join(sorted(genome))}")
            genome[gene] = coerce(value, genome[gene])
        if genome == self.genome:
            return None, (f"space_change leaves the genome of {self.parent_id} as it is; change at least one gene's "
                          "value, or give space_change [] and describe a change outside the space")
        try:
            self.renderer(genome, title="check")
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"the space {self.space} refuses that genome: {exc}; pick values from the listed changes"
        key = genome_hash(genome)
        for cid, earlier in self.taken:
            if earlier == key:
                where = f"as {cid}" if cid else "by a branch still in flight"
                return None, (f"that genome was already proposed {where}; pick a change it has not tried (or several "
                              "genes at once)")
        return genome, ""

    def render(self, genome: dict, title: str) -> str:
        return self.renderer(genome, title=title)


def _enum(values: list[Any]) -> dict[str, Any]:
    """A JSON schema allowing exactly `values`, typed where they share one JSON type."""
    kinds = {"boolean" if isinstance(v, bool) else "integer" if isinstance(v, int) else
             "number" if isinstance(v, float) else "string" for v in values}
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    return {"type": kinds.pop(), "enum": values} if len(kinds) == 1 else {"enum": values}


def coerce(value: Any, like: Any) -> Any:
    """`value` as the type of the parent's value for that gene (a model writes 3 as "3", True as "true")."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")
    if isinstance(like, int) and not isinstance(value, bool):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return value
    if isinstance(like, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    return str(value) if isinstance(like, str) and isinstance(value, (int, float)) else value


def renderer_for(spec) -> tuple[Any, Callable[..., str]] | None:
    """(space, its renderer) of the task `spec` names, or None when it declares no space that renders genomes."""
    try:
        space = task_space(task_of(spec))
    except UnknownSpace:
        return None
    if space is None or space.render is None:
        return None
    return space, space.render


def menu_for(context: PlanContext, seed: int = 0) -> SpaceMenu | None:
    """The planner's menu for this parent, or None when there is nothing to name (no space, no parent genome)."""
    found = renderer_for(context.spec)
    if found is None or not context.parent.genome:
        return None
    space, renderer = found
    engine: Any = space.engine(seed, context.objective)
    genome = engine.parent_genome(context)
    options = []
    for option in engine.single_changes(genome, context.spec):
        changes = {g: v for g, v in option.genome.items() if genome.get(g) != v}
        if changes:
            options.append((option.change, option.detail, changes))
    taken = tuple((c.id, genome_hash(c.genome)) for c in context.candidates if c.genome)
    known = {key for _, key in taken}
    # and what branches in flight have planned (the plan node's tried set holds their genomes' hashes)
    taken += tuple(("", key) for key in sorted(context.tried) if key not in known)
    return SpaceMenu(space.name, space.description, context.parent.id, genome, tuple(options), renderer, taken)
