"""The offline engine's building blocks, and the renderer that writes a genome as a candidate module.

A genome is a small dict of architecture choices (mixer, feature map, gates, norms, FFN,
width and depth). `render(genome)` writes a self-contained Python module (torch only) that
honours the sequence contract `build_model(spec) -> nn.Module`, ids [B, T] -> logits
[B, T, V]. Width, depth and heads are the genome's unless the task's spec sets them
(`spec.data` d_model, n_layers, n_heads: the lm task's rungs), so one module runs at every
rung of a scale ladder. Only the blocks the genome uses are written into the module, so each candidate
reads as one architecture, not as a configurable framework.
"""
from __future__ import annotations

import json
import textwrap

MIXERS = ("softmax", "linear", "gated_linear", "decay", "conv", "none")
FEATURE_MAPS = ("elu1", "relu", "taylor")
NORMS = ("layernorm", "rmsnorm")
FFNS = ("mlp", "glu")
KERNEL_MIXERS = ("linear", "gated_linear", "decay")  # mixers whose attention uses a feature map

DEFAULT_GENOME: dict = {
    "mixer": "softmax", "feature_map": "elu1", "n_heads": 4, "short_conv": 0, "output_gate": False,
    "norm": "layernorm", "ffn": "mlp", "ffn_mult": 2, "d_model": 64, "n_layers": 2,
}

_HEADER = '''\
"""{title}

{motivation}
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {config}
'''

_NORMS = {
    "layernorm": '''
def make_norm(d):
    return nn.LayerNorm(d)
''',
    "rmsnorm": '''
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(d):
    return RMSNorm(d)
''',
}

_FEATURE_MAPS = {
    "elu1": '''
def feature_map(x):
    return F.elu(x) + 1.0                                       # positive, so weights are >= 0
''',
    "relu": '''
def feature_map(x):
    return F.relu(x)
''',
    "taylor": '''
def feature_map(x):
    # second-order Taylor expansion of exp(q.k), as in Based: [1, x, x (x) x / sqrt(2)]
    x = x / x.shape[-1] ** 0.25
    outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) / math.sqrt(2.0)
    return torch.cat([torch.ones_like(x[..., :1]), x, outer], dim=-1)
''',
}

_SHORT_CONV = '''
class ShortConv(nn.Module):
    """Depthwise causal convolution: each position sees the previous `kernel` tokens."""

    def __init__(self, d, kernel):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d, d, kernel, groups=d)

    def forward(self, x):                                       # x: [B, T, D]
        x = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))      # pad on the left only: causal
        return self.conv(x).transpose(1, 2)
'''

_MIXERS = {
    "softmax": '''
class Mixer(nn.Module):
    """Causal softmax attention."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):                                       # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # [B, H, T, Dh]
        return self.out(y.transpose(1, 2).reshape(B, T, D))
''',
    "linear": '''
class Mixer(nn.Module):
    """Causal linear attention: softmax replaced by a feature-map kernel phi(q).phi(k)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):                                       # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = feature_map(q), feature_map(k)
        scores = q @ k.transpose(-1, -2)                        # [B, H, T, T]
        scores = scores * torch.tril(torch.ones(T, T, device=x.device))
        y = scores @ v / (scores.sum(-1, keepdim=True) + 1e-6)
        return self.out(y.transpose(1, 2).reshape(B, T, D))
''',
    "decay": '''
class Mixer(nn.Module):
    """Linear attention with a fixed exponential decay per head (retention, as in RetNet)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        gammas = 1.0 - 2.0 ** (-5.0 - torch.arange(heads, dtype=torch.float32))
        self.register_buffer("log_gamma", gammas.log().view(1, heads, 1, 1))

    def forward(self, x):                                       # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = feature_map(q), feature_map(k)
        idx = torch.arange(T, device=x.device)
        gap = (idx.view(T, 1) - idx.view(1, T)).float()         # i - j
        decay = torch.exp(self.log_gamma * gap.clamp(min=0)) * (gap >= 0)
        scores = (q @ k.transpose(-1, -2)) * decay              # [B, H, T, T]
        y = scores @ v / (scores.sum(-1, keepdim=True) + 1e-6)
        return self.out(y.transpose(1, 2).reshape(B, T, D))
''',
    "gated_linear": '''
class Mixer(nn.Module):
    """Gated linear attention: a data-dependent forget gate per head and step."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.gate = nn.Linear(d, heads)
        nn.init.constant_(self.gate.bias, 3.0)                  # start close to "remember everything"
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):                                       # x: [B, T, D]
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = feature_map(q), feature_map(k)
        log_g = F.logsigmoid(self.gate(x)).transpose(1, 2).cumsum(-1)   # [B, H, T]
        gap = log_g.unsqueeze(-1) - log_g.unsqueeze(-2)         # sum of log gates in (j, i]
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        decay = torch.exp(gap.masked_fill(~mask, float("-inf")))
        scores = (q @ k.transpose(-1, -2)) * decay
        y = scores @ v / (scores.sum(-1, keepdim=True) + 1e-6)
        return self.out(y.transpose(1, 2).reshape(B, T, D))
''',
    "conv": '''
class Mixer(nn.Module):
    """A wider causal convolution as the only sequence mixer (no attention)."""

    def __init__(self, d, heads):
        super().__init__()
        self.conv = ShortConv(d, 8)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return self.out(F.silu(self.conv(x)))
''',
}

_FFNS = {
    "mlp": '''
class FeedForward(nn.Module):
    def __init__(self, d, mult):
        super().__init__()
        self.up = nn.Linear(d, mult * d)
        self.down = nn.Linear(mult * d, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))
''',
    "glu": '''
class FeedForward(nn.Module):
    """SwiGLU: a gated feed-forward, 2/3 the hidden width so parameters stay comparable."""

    def __init__(self, d, mult):
        super().__init__()
        hidden = max(8, int(2 * mult * d / 3))
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)
''',
}


def _block(genome: dict) -> str:
    has_mixer = genome["mixer"] != "none"
    lines = ["", "class Block(nn.Module):", "    def __init__(self, d, heads, mult):", "        super().__init__()"]
    if has_mixer:
        lines += ["        self.norm1 = make_norm(d)"]
        if genome["short_conv"]:
            lines += [f"        self.short_conv = ShortConv(d, {int(genome['short_conv'])})"]
        lines += ["        self.mixer = Mixer(d, heads)"]
        if genome["output_gate"]:
            lines += ["        self.gate = nn.Linear(d, d)"]
    lines += ["        self.norm2 = make_norm(d)", "        self.ffn = FeedForward(d, mult)", "",
              "    def forward(self, x):                                       # x: [B, T, D]"]
    if has_mixer:
        lines += ["        h = self.norm1(x)"]
        if genome["short_conv"]:
            lines += ["        h = h + self.short_conv(h)"]
        if genome["output_gate"]:
            lines += ["        x = x + self.mixer(h) * torch.sigmoid(self.gate(h))"]
        else:
            lines += ["        x = x + self.mixer(h)"]
    lines += ["        return x + self.ffn(self.norm2(x))", ""]
    return "\n".join(lines)


_MODEL = '''

class Model(nn.Module):
    def __init__(self, vocab_size, max_len, d, layers, heads, mult):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(max_len, d))
        self.blocks = nn.ModuleList(Block(d, heads, mult) for _ in range(layers))
        self.norm = make_norm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, ids):                                     # ids: [B, T] -> logits [B, T, V]
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(spec):
    # a task with a scale ladder (lm) sets width, depth and heads per rung in spec.data; otherwise CONFIG's
    scale = {k: int(spec.data.get(k, CONFIG[k])) for k in ("d_model", "n_layers", "n_heads")}
    return Model(spec.vocab_size, spec.seq_len, scale["d_model"], scale["n_layers"], scale["n_heads"],
                 CONFIG["ffn_mult"])
'''


def validate(genome: dict) -> dict:
    """A complete, consistent copy of `genome`; raises ValueError naming the bad field."""
    full = {**DEFAULT_GENOME, **genome}
    for field, allowed in (("mixer", MIXERS), ("feature_map", FEATURE_MAPS), ("norm", NORMS), ("ffn", FFNS)):
        if full[field] not in allowed:
            raise ValueError(f"genome field {field}={full[field]!r} is not one of {allowed}")
    if full["d_model"] % full["n_heads"]:
        raise ValueError(f"d_model={full['d_model']} is not divisible by n_heads={full['n_heads']}")
    return full


def render(genome: dict, title: str = "A candidate sequence model.", motivation: str = "") -> str:
    """The candidate module for `genome`, as Python source."""
    g = validate(genome)
    config = json.dumps(g, sort_keys=True).replace("false", "False").replace("true", "True")
    parts = [_HEADER.format(title=title.strip(), motivation=textwrap.fill(motivation.strip(), 90) or title.strip(),
                            config=config),
             _NORMS[g["norm"]]]
    if g["mixer"] in KERNEL_MIXERS:
        parts.append(_FEATURE_MAPS[g["feature_map"]])
    if g["short_conv"] or g["mixer"] == "conv":
        parts.append(_SHORT_CONV)
    if g["mixer"] != "none":
        parts.append(_MIXERS[g["mixer"]])
    parts += [_FFNS[g["ffn"]], _block(g), _MODEL]
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def estimate_params(genome: dict, vocab_size: int, seq_len: int) -> int:
    """Parameter count of `render(genome)` without building it (used for width-vs-depth moves)."""
    g = validate(genome)
    d, layers, mult = g["d_model"], g["n_layers"], g["ffn_mult"]
    norm = 2 * d if g["norm"] == "layernorm" else d
    if g["ffn"] == "mlp":
        ffn = 2 * mult * d * d + mult * d + d
    else:
        hidden = max(8, int(2 * mult * d / 3))
        ffn = 3 * hidden * d
    block = norm + ffn
    if g["mixer"] != "none":
        block += norm + 4 * d * d
        if g["mixer"] == "gated_linear":
            block += d * g["n_heads"] + g["n_heads"]
        if g["mixer"] == "conv":
            block += -3 * d * d + 9 * d
        if g["short_conv"]:
            block += d * g["short_conv"] + d
        if g["output_gate"]:
            block += d * d + d
    return vocab_size * d * 2 + seq_len * d + layers * block + norm


def random_genomes(n: int, seed: int = 0) -> list[dict]:
    """`n` distinct random genomes, mixers in turn, the other fields drawn from `seed`.

    The random architectures of the search space: the pool of the proxy-validation study, and
    the reference pool a run's candidates are compared with ("how much better than random?").
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    pool, seen = [], set()
    while len(pool) < n:
        mixer = MIXERS[len(pool) % len(MIXERS)]
        genome = {"mixer": mixer, "feature_map": str(rng.choice(["elu1", "relu", "taylor"])),
                  "n_heads": int(rng.choice([2, 4])), "short_conv": int(rng.choice([0, 0, 3, 4])),
                  "output_gate": bool(rng.random() < 0.3), "norm": str(rng.choice(["layernorm", "rmsnorm"])),
                  "ffn": str(rng.choice(["mlp", "glu"])), "ffn_mult": int(rng.choice([2, 4])),
                  "d_model": int(rng.choice([32, 64])), "n_layers": int(rng.choice([1, 2]))}
        key = json.dumps(validate(genome), sort_keys=True)
        if key not in seen:
            seen.add(key)
            pool.append(genome)
    return pool
