"""The offline engine for NAS-Bench-201 cells (the `nb201-cells` space): one edge's op at a time, learned from the run.

A genome is a dict of the cell's six edges (`GENES`: `edge12` is the edge from node 1, the
input, to node 2; the order is `evaluators.nb201.EDGES`) to one of its five ops. `render`
writes it as a candidate module of the nb201 task (`cell(spec)` returning the benchmark's arch
string, `evaluators.tasks.nb201`); `describe` says it in a line.

The engine (`CellEngine`, the interface of `agents.offline.engine.OfflineEngine`):
- planner: the parent (a tournament winner, chosen by `agents.search` in the select node)
  gets every one-edge op change, its recombinations with the best cell so far and, once its
  children stall or its single changes are spent, pairs of changes on two edges
  (`agents.search.compose`); those already tried or measured are dropped, and one is drawn by Thompson
  sampling from the run's gene model (`agents.search.GeneModel`: what the best cells so far
  have in common). No prior: the reading list says nothing about NB201's ops, so every op
  starts at zero and the run's own lookups decide. Seeded: deterministic.
- coder: `render`; fixer: gives up (a rendered cell is always valid; a failure is a finding);
- analyst: the sequence engine's (it reads only measured numbers and the run's objective).

This is the policy `benchmarks/search_efficiency.py` measures on the table.
"""
from __future__ import annotations

import random
import textwrap

from agents import search
from agents.engine import PlanContext
from agents.offline.engine import NoProposal, OfflineEngine, genome_hash
from agents.records import Candidate, Plan
from evaluators.fitness import Objective
from evaluators.nb201_cells import EDGES, OPS
from wire.jobs import EvalResult
from wire.task import TaskSpec

GENES = tuple(f"edge{i}{j}" for i, j in EDGES)
SHORT = {"skip_connect": "skip", "none": "none", "nor_conv_3x3": "conv3", "nor_conv_1x1": "conv1",
         "avg_pool_3x3": "pool"}
# the NAS-Bench-201 paper's reference cell: a ResNet basic block (two 3x3 convolutions and a skip)
BASELINES = {"resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"}
MAX_PAIRS = 400     # pairs of changes offered when single changes stall


def validate(genome: dict) -> dict:
    """A checked copy of a cell genome, in `GENES` order; ValueError naming what is wrong."""
    unknown = sorted(set(genome) - set(GENES))
    missing = [g for g in GENES if g not in genome]
    if unknown or missing:
        raise ValueError(f"a cell genome maps each of {GENES} to an op; "
                         + "; ".join(part for part in (f"unknown {unknown}" if unknown else "",
                                                        f"missing {missing}" if missing else "") if part))
    bad = {g: genome[g] for g in GENES if genome[g] not in OPS}
    if bad:
        raise ValueError(f"unknown ops {bad}; ops are {OPS}")
    return {g: genome[g] for g in GENES}


def from_indices(indices) -> dict:
    """The genome of six op indices (`evaluators.nb201`'s encoding)."""
    return validate({g: OPS[int(i)] for g, i in zip(GENES, indices)})


def indices(genome: dict) -> tuple[int, ...]:
    g = validate(genome)
    return tuple(OPS.index(g[gene]) for gene in GENES)


def arch_str(genome: dict) -> str:
    from evaluators.nb201 import to_arch_str
    return to_arch_str(indices(genome))


def describe(genome: dict) -> str:
    """The cell in a line: each edge (from node -> to node) and its op."""
    g = validate(genome)
    return " ".join(f"{i}>{j} {SHORT[g[gene]]}" for (i, j), gene in zip(EDGES, GENES))


def render(genome: dict, title: str = "A NAS-Bench-201 cell.", motivation: str = "") -> str:
    """The candidate module for `genome`: `cell(spec)` returning its arch string."""
    g = validate(genome)
    doc = "\n\n".join(part for part in (title.strip(), textwrap.fill(motivation.strip(), 90)) if part)
    edges = "\n".join(f"#   node {i} -> node {j}: {g[gene]}" for (i, j), gene in zip(EDGES, GENES))
    return (f'"""{doc}"""\n\n# the cell\'s edges (node 1 is the cell\'s input, node 4 its output):\n{edges}\n'
            f'CELL = "{arch_str(g)}"\n\n\ndef cell(spec):\n    return CELL\n')


def baselines() -> dict[str, tuple[dict, str]]:
    """{name: (genome, source)}: the paper's reference cell."""
    from evaluators.nb201 import from_arch_str
    out = {}
    for name, arch in BASELINES.items():
        genome = from_indices(from_arch_str(arch))
        out[name] = (genome, render(genome, title=f"Reference: the {name} cell.",
                                    motivation="NAS-Bench-201's reference cell, a ResNet basic block."))
    return out


def random_genomes(n: int, seed: int) -> list[dict]:
    """`n` distinct cells drawn uniformly from all 15,625 with `seed`."""
    rng = random.Random(f"nb201-cells:{seed}")
    found: dict[tuple, dict] = {}
    while len(found) < min(n, len(OPS) ** len(GENES)):
        picks = tuple(rng.randrange(len(OPS)) for _ in GENES)
        found.setdefault(picks, from_indices(picks))
    return list(found.values())


def single_changes(genome: dict) -> list[search.Option]:
    """Every one-edge op change of `genome` (the change kind is the edge: pairs are then two different edges)."""
    g = validate(genome)
    out = []
    for (i, j), gene in zip(EDGES, GENES):
        for op in OPS:
            if op != g[gene]:
                out.append(search.Option({**g, gene: op}, gene, f"edge {i}->{j}: {g[gene]} -> {op}",
                                         f"One edge at a time: the edge from node {i} to node {j} carries {g[gene]}; "
                                         f"{op} there tests whether that edge limits the cell.",
                                         f"a change of {op} on edge {i}->{j}", (gene,)))
    return out


class CellEngine(OfflineEngine):
    """The offline engine over NAS-Bench-201 cells (see the module docstring); `analyze` is `OfflineEngine`'s."""

    name = "offline"

    def parent_genome(self, context: PlanContext) -> dict:
        if not context.parent.genome:           # a module an LLM or a person wrote: no cell to change
            raise NoProposal(f"{context.parent.id} has no cell genome to change")
        return validate(context.parent.genome)

    def measured(self, context: PlanContext) -> set[str]:
        """Never a cell the run already has, whoever measured it (a benchmark's driver passes only proposals)."""
        return set(context.tried) | {genome_hash(c.genome) for c in context.candidates if c.genome}

    def gene_priors(self) -> None:
        return None                             # no reading-list priors over cells: learned from the run alone

    def kind_bonus(self, context: PlanContext) -> None:
        return None                             # every edge is a kind of its own: no kind's record to weigh

    def single_changes(self, parent_genome: dict, spec: TaskSpec) -> list[search.Option]:
        return single_changes(parent_genome)

    def options(self, parent: dict, context: PlanContext, objective: Objective) -> list[search.Option]:
        """The parent's one-edge changes, its recombinations with the best cell so far, and pairs of changes once its
        children stall (or its single changes are all tried)."""
        singles = single_changes(parent)
        elite = search.elite_of(context.candidates, objective, besides=context.parent.id)
        fresh = [o for o in singles if genome_hash(o.genome) not in context.tried]
        pairs = not fresh or search.stalled(context.parent, context.candidates, objective)
        return search.compose(parent, singles, (elite.id, validate(elite.genome or {})) if elite else None,
                              pairs=pairs, check=validate, max_pairs=MAX_PAIRS)

    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec, *, candidates: list[Candidate] | None = None) -> str:
        return render(plan.genome or {}, title=plan.title, motivation=plan.motivation)

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, *, parent: Candidate | None = None,
            spec: TaskSpec | None = None, candidates: list[Candidate] | None = None) -> tuple[Plan, str] | None:
        return None
