"""Baseline: causal softmax attention.

Two pre-norm blocks of multi-head causal softmax attention and a GELU MLP; the reference
for associative recall.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"d_model": 64, "feature_map": "elu1", "ffn": "mlp", "ffn_mult": 2, "mixer": "softmax", "n_heads": 4, "n_layers": 2, "norm": "layernorm", "output_gate": False, "short_conv": 0}


def make_norm(d):
    return nn.LayerNorm(d)


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


class FeedForward(nn.Module):
    def __init__(self, d, mult):
        super().__init__()
        self.up = nn.Linear(d, mult * d)
        self.down = nn.Linear(mult * d, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d, heads, mult):
        super().__init__()
        self.norm1 = make_norm(d)
        self.mixer = Mixer(d, heads)
        self.norm2 = make_norm(d)
        self.ffn = FeedForward(d, mult)

    def forward(self, x):                                       # x: [B, T, D]
        h = self.norm1(x)
        x = x + self.mixer(h)
        return x + self.ffn(self.norm2(x))


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
