"""The NAS-Bench-201 search space: its op set, genome <-> arch-string parsing, the cell and the network.

NAS-Bench-201 (Dong & Yang, ICLR 2020) is a cell search space: a cell is a 4-node DAG whose
six edges each carry one of five ops, and every cell is trained inside one fixed network.
This module builds that network in plain torch, as the benchmark's own code does
(`xautodl` `TinyNetwork` with `InferCell`), so published tables can grade our evaluators:

    stem      Conv3x3(3 -> C) + BN
    stage 1   5 cells at C          (C = 16)
    reduce    residual block C -> 2C, stride 2 (ReLU-Conv3x3-BN x 2, AvgPool2 + Conv1x1 shortcut)
    stage 2   5 cells at 2C
    reduce    residual block 2C -> 4C
    stage 3   5 cells at 4C
    head      BN-ReLU, global average pooling, Linear(4C -> classes)

A genome is six op indices, one per edge in `EDGES` order, ops indexed as in `OPS` (NASLib's
encoding, the one the tables in `shared/data/nas-benchmarks` use). The arch string is the
benchmark's own notation, one `|op~source|` group per node:
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

Cost measures (the `params` / `flops` fields of NASLib's `zc_nasbench201.json`):
- `params_millions`: every parameter, BN affine weights included, in millions.
- `flops_millions`: operations of one forward pass of one image (32x32 for CIFAR, 16x16 for
  ImageNet16-120), in millions: the multiply-accumulates of the convolutions and the
  classifier (a multiply-add counts 1, not 2 as in `torch.utils.flop_counter`), plus 2 per
  BN output element, 1 per ReLU output element and k*k per output element of a k x k average
  pooling; residual and node sums, the zero op and the global mean are free. This
  reproduces the table's field within 0.1% on every NASLib cell (the small, constant rest is
  in the fixed stem / reduction / head part; which counter NASLib used is not recorded).

`batchnorm=False` builds the same network with every BN left out, as Abdelfattah et al. (2021)
do for SynFlow (`get_prunable_copy(bn=False)`): a data-free score should not depend on
batch statistics. What this module does not do: train the network or know any accuracy;
it imports nothing but torch.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from evaluators.nb201_cells import (CELLS_PER_STAGE, CHANNELS, EDGES, INPUT_SIZE, NUM_CLASSES, OPS,  # noqa: F401
                                    Genome, check_genome, from_arch_str, genome_from_key, to_arch_str)


# --- the modules -----------------------------------------------------------------------------

def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ReLU(inplace=False),
                               nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class Zero(nn.Module):
    """The `none` op: the edge carries nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int, batchnorm: bool) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity()
    if name == "none":
        return Zero()
    if name == "nor_conv_3x3":
        return relu_conv_bn(channels, channels, 3, 1, batchnorm)
    if name == "nor_conv_1x1":
        return relu_conv_bn(channels, channels, 1, 1, batchnorm)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}; ops are {OPS}")


class Cell(nn.Module):
    """Node j = sum over edges (i, j) of op_ij(node i); the output is node 4."""

    def __init__(self, genome: Genome, channels: int, batchnorm: bool = True):
        super().__init__()
        self.genome = check_genome(genome)
        self.edges = nn.ModuleList(make_op(OPS[g], channels, batchnorm) for g in self.genome)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = {1: x}
        for target in (2, 3, 4):
            nodes[target] = sum(op(nodes[i]) for op, (i, j) in zip(self.edges, EDGES) if j == target)
        return nodes[4]


class ResidualReduction(nn.Module):
    """The block between stages: halves the resolution, doubles the width (a ResNet basic block)."""

    def __init__(self, c_in: int, c_out: int, batchnorm: bool = True):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2, batchnorm)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1, batchnorm)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network around one cell genome; input [B, 3, H, W], output logits [B, classes]."""

    def __init__(self, genome, num_classes: int = 10, channels: int = CHANNELS,
                 cells_per_stage: int = CELLS_PER_STAGE, batchnorm: bool = True):
        super().__init__()
        self.genome = check_genome(genome)
        stem: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        head: list[nn.Module] = [nn.ReLU()]
        if batchnorm:
            stem.append(nn.BatchNorm2d(channels))
            head.insert(0, nn.BatchNorm2d(4 * channels))
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        for stage, width in enumerate((channels, 2 * channels, 4 * channels)):
            if stage:
                blocks.append(ResidualReduction(width // 2, width, batchnorm))
            blocks.extend(Cell(self.genome, width, batchnorm) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*blocks)
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(4 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.cells(self.stem(x)))          # [B, 4C, H/4, W/4]
        return self.classifier(h.mean(dim=(2, 3)))       # [B, classes]


def build_network(genome, dataset: str = "cifar10", batchnorm: bool = True) -> NB201Network:
    """The network NAS-Bench-201 trained `genome` in for `dataset` (its number of classes)."""
    if dataset not in NUM_CLASSES:
        raise ValueError(f"unknown NB201 dataset {dataset!r}; choose one of {sorted(NUM_CLASSES)}")
    return NB201Network(genome, NUM_CLASSES[dataset], batchnorm=batchnorm)


def example_input(dataset: str = "cifar10", batch: int = 1) -> torch.Tensor:
    size = INPUT_SIZE[dataset]
    return torch.zeros(batch, 3, size, size)


def params_millions(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


ELEMENTWISE_COST = {nn.BatchNorm2d: 2, nn.ReLU: 1}   # operations per output element (BN: scale and shift)


def _operations(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):                    # one multiply-add per weight per output position
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, nn.AvgPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        return k * k * out.numel()
    return ELEMENTWISE_COST[type(module)] * out.numel()


def flops_millions(model: nn.Module, dataset: str = "cifar10", elementwise: bool = True) -> float:
    """Operations of one forward pass of one `dataset` image, in millions (see the module docstring).

    Multiply-accumulates of convolutions and the classifier (biases not counted: the count
    `torch.utils.flop_counter` makes, halved, which `conv_linear_macs` gives for comparison),
    plus `ELEMENTWISE_COST` per output element of BN and ReLU and k*k per output element of a
    k x k average pooling. Counted with forward hooks: `FlopCounterMode` costs ~0.4 s of
    module tracking per fresh network, which matters over thousands of cells.
    `elementwise=False` counts the multiply-accumulates alone.
    """
    total = 0

    def count(module: nn.Module, args, out: torch.Tensor) -> None:
        nonlocal total
        total += _operations(module, out)

    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
    if elementwise:
        kinds += (nn.AvgPool2d, *ELEMENTWISE_COST)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model.eval()(example_input(dataset))
    finally:
        for h in handles:
            h.remove()
    return total / 1e6


def conv_linear_macs(model: nn.Module, dataset: str = "cifar10") -> float:
    """Multiply-accumulates of convolutions and matmuls per `torch.utils.flop_counter` (halved), in millions."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(example_input(dataset))
    return counter.get_total_flops() / 2 / 1e6
