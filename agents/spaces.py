"""Search spaces: what the offline engine can propose for a task, and the task's reference candidates.

A task names its space in `Task.search_space` (`evaluators.tasks.base`): a name below, or
"module:attribute" for a `SearchSpace` a package of its own defines. A space gives
- `engine(seed, objective)`: the offline research engine over it (the planner's catalogue of
  changes to a genome, and the renderer that writes a genome as a candidate module);
- `baselines()`: {name: (genome, source)}, the references a run starts from (a task may give
  its own instead: `Task.baselines`);
- `random_genomes(n, seed)`: random members, the "better than random" yardstick (optional).

Shipped: `sequence-blocks` (token models from `agents.offline.blocks`, for mqar and charlm),
`decoding-techniques` (inference procedures, `agents.offline.decoding`) and `nb201-cells`
(NAS-Bench-201 cells, `agents.offline.nb201`). Everything is imported when first used, so
naming a space costs nothing. What this module does not do: choose a space for a task (the
task says which) or know what kind of task it serves.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    engine: Callable[..., object]                         # (seed, objective=None) -> ResearchEngine
    baselines: Callable[[], dict[str, tuple[dict, str]]]
    random_genomes: Callable[[int, int], list[dict]] | None = None
    render: Callable[..., str] | None = None              # (genome, title=...) -> module source
    describe: Callable[[dict], str] | None = None         # genome -> what it is, in a few words (tables)


class UnknownSpace(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _sequence_engine(seed: int, objective=None):
    from agents.offline.engine import OfflineEngine
    return OfflineEngine(seed, objective)


def _sequence_baselines():
    from evaluators.baselines import BASELINES
    return BASELINES


def _sequence_random(n: int, seed: int) -> list[dict]:
    from agents.offline.blocks import random_genomes
    return random_genomes(n, seed=seed)


def _sequence_render(genome: dict, title: str = "A candidate sequence model.") -> str:
    from agents.offline.blocks import render
    return render(genome, title=title)


def _decoding_engine(seed: int, objective=None):
    from agents.offline.decoding import DecodingEngine
    return DecodingEngine(seed, objective)


def _decoding_baselines():
    from agents.offline.decoding import baselines
    return baselines()


def _decoding_describe(genome: dict) -> str:
    from agents.offline.decoding import techniques
    return ", ".join(techniques(genome))


def _nb201_engine(seed: int, objective=None):
    from agents.offline.nb201 import CellEngine
    return CellEngine(seed, objective)


def _nb201_baselines():
    from agents.offline.nb201 import baselines
    return baselines()


def _nb201_random(n: int, seed: int) -> list[dict]:
    from agents.offline.nb201 import random_genomes
    return random_genomes(n, seed)


def _nb201_render(genome: dict, title: str = "A NAS-Bench-201 cell.") -> str:
    from agents.offline.nb201 import render
    return render(genome, title=title)


def _nb201_describe(genome: dict) -> str:
    from agents.offline.nb201 import describe
    return describe(genome)


SPACES: dict[str, SearchSpace] = {
    "sequence-blocks": SearchSpace("sequence-blocks", "token models built from mixers, feature maps, short "
                                   "convolutions, gates, norms and FFNs (agents.offline.blocks)",
                                   _sequence_engine, _sequence_baselines, _sequence_random, _sequence_render),
    "decoding-techniques": SearchSpace("decoding-techniques", "decoding procedures: caching, drafting with batched "
                                       "verification, quantisation, early exit (agents.offline.decoding)",
                                       _decoding_engine, _decoding_baselines, describe=_decoding_describe),
    "nb201-cells": SearchSpace("nb201-cells", "NAS-Bench-201 cells: six edges, five operations each "
                               "(agents.offline.nb201)", _nb201_engine, _nb201_baselines, _nb201_random, _nb201_render,
                               _nb201_describe),
}


def get_space(ref: str) -> SearchSpace:
    """The space `ref` names (a shipped name or "module:attribute"); UnknownSpace says what exists."""
    if ref in SPACES:
        return SPACES[ref]
    module_name, sep, attr = ref.partition(":")
    if not sep:
        raise UnknownSpace(f"unknown search space {ref!r}; shipped: {', '.join(SPACES)} (or 'module:attribute')")
    try:
        space = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownSpace(f"search space {ref!r} cannot be loaded: {exc}") from None
    if not isinstance(space, SearchSpace):
        raise UnknownSpace(f"search space {ref!r} is a {type(space).__name__}, not an agents.spaces.SearchSpace")
    return space


def task_space(task) -> SearchSpace | None:
    """The search space a task declares, or None."""
    return get_space(task.search_space) if task.search_space else None


def task_baselines(task, spec) -> dict[str, tuple[dict, str]]:
    """{name: (genome, source)} of the task's references: its own, else its search space's, else none."""
    own = task.baselines(spec)
    if own is not None:
        return own
    space = task_space(task)
    return space.baselines() if space is not None else {}
