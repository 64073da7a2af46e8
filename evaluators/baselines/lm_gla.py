"""Baseline: gated linear attention (GLA, Yang et al. 2024), computed in chunks.

A recurrent mixer with a matrix state per head, S_t = diag(a_t) S_{t-1} + k_t v_t^T and
o_t = q_t S_t, where the forget gate a_t in (0, 1)^dk depends on the input (a low-rank
projection, log-sigmoid divided by a temperature of 16, as in the paper). Training uses the
chunked parallel form: inside a chunk of CHUNK positions the outputs come from a causal
[C x C] score matrix whose decays are exp of sums of log gates (never positive, so never
overflowing); between chunks the state is carried forward, one step per chunk. The output is
normalised per head and gated by swish(W x); blocks are pre-RMSNorm with a SwiGLU
feed-forward. Untied output head, PyTorch's default initialisation (see `lm_transformer`). Width,
depth and heads come from the task's scale (`spec.data`), else CONFIG.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"d_model": 64, "n_layers": 2, "n_heads": 4, "chunk": 16, "gate_rank": 16, "gate_temperature": 16.0}


def scale_of(spec):
    """(d_model, n_layers, n_heads): the task's rung where it sets one, else CONFIG."""
    data = getattr(spec, "data", None) or {}
    return (int(data.get("d_model", CONFIG["d_model"])), int(data.get("n_layers", CONFIG["n_layers"])),
            int(data.get("n_heads", CONFIG["n_heads"])))


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def chunked_gla(q, k, v, log_a, chunk):
    """o_t = q_t S_t with S_t = diag(exp(log_a_t)) S_{t-1} + k_t v_t^T, S_0 = 0.

    q, k, log_a: [B, H, T, dk]; v: [B, H, T, dv] -> [B, H, T, dv]. Padding at the end (zero keys,
    no decay) only adds positions after the real ones, so it cannot leak into them.
    """
    B, H, T, dk = q.shape
    dv = v.shape[-1]
    pad = (-T) % chunk
    if pad:
        q, k, v, log_a = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, log_a))
    n = (T + pad) // chunk
    q, k, log_a = (t.reshape(B, H, n, chunk, dk) for t in (q, k, log_a))
    v = v.reshape(B, H, n, chunk, dv)
    b = log_a.cumsum(3)                                         # log of the decay from the chunk start, <= 0
    # inside a chunk: score_ij = sum_d q_id k_jd exp(b_id - b_jd) for j <= i (the exponent is <= 0 there)
    causal = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=q.device))
    gap = (b.unsqueeze(4) - b.unsqueeze(3)).masked_fill(~causal[:, :, None], float("-inf"))   # [B,H,n,C,C,dk]
    scores = torch.einsum("bhnid,bhnjd,bhnijd->bhnij", q, k, gap.exp())
    intra = scores @ v                                          # [B, H, n, C, dv]
    q_in = q * b.exp()                                          # decay from the chunk start to position i
    last = b[:, :, :, -1:]                                      # [B, H, n, 1, dk]
    k_out = k * (last - b).exp()                                # decay from position j to the chunk end
    state = q.new_zeros(B, H, dk, dv)
    outs = []
    for c in range(n):                                          # carry the state across chunks
        outs.append(intra[:, :, c] + q_in[:, :, c] @ state)
        state = state * last[:, :, c, 0].exp().unsqueeze(-1) + k_out[:, :, c].transpose(-1, -2) @ v[:, :, c]
    return torch.stack(outs, 2).reshape(B, H, n * chunk, dv)[:, :, :T]


class GLA(nn.Module):
    def __init__(self, d, heads, chunk, rank, temperature):
        super().__init__()
        self.heads, self.chunk, self.temperature = heads, chunk, temperature
        self.key_dim = d // 2                                   # half-width keys, as in the paper
        self.q = nn.Linear(d, self.key_dim, bias=False)
        self.k = nn.Linear(d, self.key_dim, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.gate = nn.Sequential(nn.Linear(d, rank, bias=False), nn.Linear(rank, self.key_dim))
        self.out_gate = nn.Linear(d, d, bias=False)
        self.head_norm = RMSNorm(d // heads)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x):                                       # x: [B, T, D]
        B, T, D = x.shape
        H = self.heads

        def split(t):
            return t.view(B, T, H, -1).transpose(1, 2)
        q = split(self.q(x)) * (self.key_dim // H) ** -0.5
        k, v = split(self.k(x)), split(self.v(x))
        log_a = split(F.logsigmoid(self.gate(x)) / self.temperature)
        # the chunked sums run in float32 whatever the autocast dtype: decays are products of many gates
        with torch.autocast(device_type=x.device.type, enabled=False):
            o = chunked_gla(q.float(), k.float(), v.float(), log_a.float(), self.chunk)
        o = self.head_norm(o.to(x.dtype)).transpose(1, 2).reshape(B, T, D)
        return self.out(F.silu(self.out_gate(x)) * o)


class SwiGLU(nn.Module):
    def __init__(self, d):
        super().__init__()
        hidden = 8 * ((8 * d // 3 + 7) // 8)
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        a, b = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1 = RMSNorm(d)
        self.mixer = GLA(d, heads, CONFIG["chunk"], CONFIG["gate_rank"], CONFIG["gate_temperature"])
        self.norm2, self.ffn = RMSNorm(d), SwiGLU(d)

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Model(nn.Module):
    def __init__(self, vocab_size, d, layers, heads):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=False)

    def forward(self, ids):                                     # ids: [B, T] -> logits [B, T, V]
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(spec):
    d, layers, heads = scale_of(spec)
    return Model(spec.vocab_size, d, layers, heads)
