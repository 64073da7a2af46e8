"""Baseline: MLP only, no sequence mixing.

Each position sees only its own token, so the model cannot recall a value from earlier in
the sequence: the floor any mixer must beat.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"d_model": 64, "feature_map": "elu1", "ffn": "mlp", "ffn_mult": 2, "mixer": "none", "n_heads": 4, "n_layers": 2, "norm": "layernorm", "output_gate": False, "short_conv": 0}


def make_norm(d):
    return nn.LayerNorm(d)


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
        self.norm2 = make_norm(d)
        self.ffn = FeedForward(d, mult)

    def forward(self, x):                                       # x: [B, T, D]
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
