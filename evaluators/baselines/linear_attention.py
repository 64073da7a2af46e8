"""Baseline: causal linear attention.

Softmax replaced by the elu(x)+1 kernel (Katharopoulos et al., 2020): linear-time, fixed-
size state, weaker exact recall.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"d_model": 64, "feature_map": "elu1", "ffn": "mlp", "ffn_mult": 2, "mixer": "linear", "n_heads": 4, "n_layers": 2, "norm": "layernorm", "output_gate": False, "short_conv": 0}


def make_norm(d):
    return nn.LayerNorm(d)


def feature_map(x):
    return F.elu(x) + 1.0                                       # positive, so weights are >= 0


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
