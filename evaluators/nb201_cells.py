"""The NAS-Bench-201 cell space without torch: its ops, edges and sizes, and genome <-> arch string.

`evaluators.nb201` builds the networks (torch); this module is what a host-side reader of
cells needs (the `nb201` task's settings, scoring and table checks, the offline engine) without
paying for torch. Encoding and notation are described in `evaluators.nb201`.
"""
from __future__ import annotations

import re

OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")   # index = genome value
EDGES = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))                      # (from node, to node), 1 = input
CHANNELS = 16          # C: stage widths are C, 2C, 4C
CELLS_PER_STAGE = 5    # N
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
INPUT_SIZE = {"cifar10": 32, "cifar100": 32, "ImageNet16-120": 16}

Genome = tuple[int, int, int, int, int, int]

# arch-string position -> genome index: node 2 reads edge (1,2); node 3 (1,3), (2,3); node 4 (1,4), (2,4), (3,4)
_STRING_ORDER = tuple(EDGES.index(e) for e in sorted(EDGES, key=lambda e: (e[1], e[0])))
_GROUP = re.compile(r"\|([a-z0-9_]+)~(\d)")


def genome_from_key(key: str) -> Genome:
    """The genome of a NASLib table key such as `"(4, 3, 3, 3, 2, 3)"`."""
    return check_genome(tuple(int(v) for v in key.strip("()[] ").split(",")))


def check_genome(genome) -> Genome:
    values = tuple(int(v) for v in genome)
    if len(values) != len(EDGES) or not all(0 <= v < len(OPS) for v in values):
        raise ValueError(f"an NB201 genome is {len(EDGES)} op indices in 0..{len(OPS) - 1} (ops {OPS}); "
                         f"got {genome!r}")
    return values  # type: ignore[return-value]


def to_arch_str(genome) -> str:
    """The benchmark's arch string of `genome`."""
    genome = check_genome(genome)
    groups = [f"{OPS[genome[i]]}~{EDGES[i][0] - 1}" for i in _STRING_ORDER]
    return "|{}|+|{}|{}|+|{}|{}|{}|".format(*groups)


def from_arch_str(arch: str) -> Genome:
    """The genome of an arch string (`to_arch_str`'s inverse); raises ValueError naming what is wrong."""
    nodes = arch.strip().split("+")
    found = [_GROUP.findall(node) for node in nodes]
    if [len(f) for f in found] != [1, 2, 3]:
        raise ValueError(f"an NB201 arch string has nodes of 1, 2 and 3 edges joined by '+', such as "
                         f"'|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|'; "
                         f"got {arch!r}")
    genome = [0] * len(EDGES)
    for target, groups in enumerate(found, start=2):
        for op, source in groups:
            edge = (int(source) + 1, target)
            if op not in OPS or edge not in EDGES:
                raise ValueError(f"unknown op {op!r} or edge {source}->{target - 1} in {arch!r}; ops are {OPS}")
            genome[EDGES.index(edge)] = OPS.index(op)
    return check_genome(genome)
