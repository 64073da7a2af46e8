"""The catalogue of changes the offline planner can make to a sequence-mixer genome.

Each change kind proposes concrete variants of a parent genome, with the hypothesis that
motivates it (paraphrasing the reading list: Zoology, Based, RetNet, GLA, GLU variants).
"""
from __future__ import annotations

from dataclasses import dataclass

from agents.offline.blocks import FEATURE_MAPS, KERNEL_MIXERS, estimate_params, validate


@dataclass(frozen=True)
class Proposal:
    change: str
    detail: str
    genome: dict
    motivation: str
    expected: str


def _swap_mixer(g, spec):
    why = {
        "softmax": "Exact softmax attention can look up any earlier key, which is what associative recall needs.",
        "linear": "Linear attention keeps a fixed-size state; it is cheaper, and Zoology-style results suggest "
                  "it recalls less precisely than softmax attention.",
        "gated_linear": "A data-dependent forget gate (GLA, Mamba-style selectivity) lets the state drop "
                        "irrelevant tokens and keep the key-value pairs that matter.",
        "decay": "A fixed exponential decay per head (RetNet) gives multi-scale memory at linear cost.",
        "conv": "A gated long convolution is cheap; Zoology reports convolutions struggle with recall, so this "
                "tests how much recall a pure convolution mixer keeps.",
    }
    for mixer in ("softmax", "linear", "gated_linear", "decay", "conv"):
        if mixer != g["mixer"]:
            yield Proposal("swap_mixer", f"mixer {g['mixer']} -> {mixer}", {**g, "mixer": mixer}, why[mixer],
                           "accuracy changes with the mixer's recall ability")


def _feature_map(g, spec):
    if g["mixer"] not in KERNEL_MIXERS:
        return
    for fmap in FEATURE_MAPS:
        if fmap != g["feature_map"]:
            yield Proposal("feature_map", f"feature_map {g['feature_map']} -> {fmap}", {**g, "feature_map": fmap},
                           "The feature map sets how sharply a linear-attention kernel can match keys; Based "
                           "argues a Taylor expansion of exp approximates softmax's sharp lookups.",
                           "a sharper kernel raises recall accuracy")


def _output_gate(g, spec):
    if g["mixer"] == "none":
        return
    new = not g["output_gate"]
    yield Proposal("output_gate", f"output_gate {g['output_gate']} -> {new}", {**g, "output_gate": new},
                   "A sigmoid output gate on the mixer (as in GLA and Mamba) lets each position decide how "
                   "much of the retrieved value to let through.",
                   "cleaner retrieval, slightly more parameters")


def _norm(g, spec):
    new = "rmsnorm" if g["norm"] == "layernorm" else "layernorm"
    yield Proposal("norm", f"norm {g['norm']} -> {new}", {**g, "norm": new},
                   "RMSNorm drops the mean-centering of LayerNorm; it is cheaper and often trains as well.",
                   "similar accuracy at slightly lower cost")


def _ffn(g, spec):
    new = "glu" if g["ffn"] == "mlp" else "mlp"
    yield Proposal("glu_ffn", f"ffn {g['ffn']} -> {new}", {**g, "ffn": new},
                   "Gated linear units (SwiGLU) improve feed-forward layers at equal parameter count.",
                   "lower loss at similar parameter count")


def _short_conv(g, spec):
    if g["mixer"] in ("none", "conv"):
        return
    for kernel in (0, 3, 4):
        if kernel != g["short_conv"]:
            yield Proposal("short_conv", f"short_conv {g['short_conv']} -> {kernel}", {**g, "short_conv": kernel},
                           "A short causal convolution before the mixer lets each position see its neighbours, "
                           "so a value token can carry its key: Based and H3 use one to make recall easy.",
                           "much higher recall accuracy for a few extra parameters" if kernel else
                           "tests whether the convolution is still needed")


def _heads(g, spec):
    if g["mixer"] in ("none", "conv"):
        return
    for heads in (2, 4, 8):
        if heads != g["n_heads"] and g["d_model"] % heads == 0:
            yield Proposal("heads", f"n_heads {g['n_heads']} -> {heads}", {**g, "n_heads": heads},
                           "More heads give more independent lookups per layer; fewer give each head a wider "
                           "key space.", "a different recall/capacity balance at equal parameters")


def _ffn_mult(g, spec):
    new = 4 if g["ffn_mult"] == 2 else 2
    yield Proposal("ffn_mult", f"ffn_mult {g['ffn_mult']} -> {new}", {**g, "ffn_mult": new},
                   "Recall lives in the mixer, so feed-forward width mostly buys memorisation; this tests "
                   "whether that capacity helps or is wasted.", "parameters change more than accuracy")


def _width_depth(g, spec):
    budget = estimate_params(g, spec.vocab_size, spec.seq_len)
    for layers in (g["n_layers"] - 1, g["n_layers"] + 1):
        if not 1 <= layers <= 4:
            continue
        step = 8 * g["n_heads"] // 4 if g["n_heads"] > 2 else 8
        best = None
        for d in range(step, 257, step):
            if d % g["n_heads"]:
                continue
            gap = abs(estimate_params({**g, "n_layers": layers, "d_model": d}, spec.vocab_size, spec.seq_len) - budget)
            if best is None or gap < best[0]:
                best = (gap, d)
        d = best[1]
        if d == g["d_model"]:
            continue
        yield Proposal("width_depth", f"layers {g['n_layers']} -> {layers}, d_model {g['d_model']} -> {d} "
                       "(same parameter budget)", {**g, "n_layers": layers, "d_model": d},
                       "At a fixed parameter budget, depth composes lookups (induction needs two steps) while "
                       "width gives each lookup more room.", "accuracy shifts with the depth/width trade")


def _width(g, spec):
    for d in (32, 64, 128):
        if d != g["d_model"] and d % g["n_heads"] == 0:
            yield Proposal("width", f"d_model {g['d_model']} -> {d}", {**g, "d_model": d},
                           "Width is capacity per position: a wider residual stream stores more key-value "
                           "associations without interference (Zoology ties recall to state size), at more "
                           "parameters and compute." if d > g["d_model"] else
                           "A narrower model is cheaper; this tests whether the extra width was needed.",
                           "higher quality at more parameters" if d > g["d_model"] else "lower cost, similar quality")


def _depth(g, spec):
    for layers in (g["n_layers"] - 1, g["n_layers"] + 1):
        if 1 <= layers <= 4:
            yield Proposal("depth", f"n_layers {g['n_layers']} -> {layers}", {**g, "n_layers": layers},
                           "Depth composes lookups: an induction-style recall needs one layer to attach a key to "
                           "its value and another to retrieve it." if layers > g["n_layers"] else
                           "A shallower model is cheaper; this tests whether the extra layer was needed.",
                           "higher quality at more parameters" if layers > g["n_layers"] else
                           "lower cost, similar quality")


CHANGES = {
    "swap_mixer": _swap_mixer, "feature_map": _feature_map, "output_gate": _output_gate, "norm": _norm,
    "glu_ffn": _ffn, "short_conv": _short_conv, "heads": _heads, "ffn_mult": _ffn_mult,
    "width_depth": _width_depth, "width": _width, "depth": _depth,
}


# the genes a task may fix from outside the genome (the `lm` ladder's rung sets width, depth and heads in
# `spec.data`; the rendered module reads them there): changes to those genes would build the parent again
FIXED_BY_SPEC = {"d_model": ("width_depth", "width"), "n_layers": ("width_depth", "depth"), "n_heads": ("heads",)}


def proposals(genome: dict, spec) -> list[Proposal]:
    g = validate(genome)
    data = getattr(spec, "data", None) or {}
    idle = {kind for gene, kinds in FIXED_BY_SPEC.items() if gene in data for kind in kinds}
    return [p for kind, make in CHANGES.items() if kind not in idle for p in make(g, spec)]
