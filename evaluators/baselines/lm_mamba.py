"""Baseline: a Mamba-2 selective state-space model (Dao & Gu 2024, after Mamba, Gu & Dao 2023), in chunks.

The reading list's third family: no attention and no separate feed-forward. Each block is one
gated, expanded SSM: the input is projected to x (expanded 2x), a gate z, the state's input and
output maps B_t and C_t (d_state wide, shared by the heads) and a step size dt per head; x, B,
C pass a short causal depthwise convolution; then per head h_t = exp(dt_t A) h_{t-1} + dt_t
x_t B_t^T and y_t = h_t C_t + D x_t, with A < 0 a learned scalar per head (the "selective"
part: dt depends on the input). The scalar decay makes the recurrence a masked linear
attention, computed in chunks of CHUNK positions (a causal [C x C] score matrix inside a chunk,
the state carried between chunks). The output is normalised, gated by silu(z) and projected
back. Untied output head; PyTorch's default initialisation except dt and A (the paper's). Width,
depth and heads come from the task's scale (`spec.data`), else CONFIG.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = {"d_model": 64, "n_layers": 2, "n_heads": 4, "chunk": 16, "d_state": 16, "expand": 2, "conv": 4}


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


def chunked_ssd(c, b, x, log_a, chunk):
    """y_t = C_t h_t with h_t = exp(log_a_t) h_{t-1} + B_t x_t^T, h_0 = 0 (a scalar decay per head and step).

    c, b: [B, H, T, N]; x: [B, H, T, P]; log_a: [B, H, T] (<= 0) -> [B, H, T, P]. Padding at the end
    only adds positions after the real ones.
    """
    Bsz, H, T, N = c.shape
    P = x.shape[-1]
    pad = (-T) % chunk
    if pad:
        c, b, x = (F.pad(t, (0, 0, 0, pad)) for t in (c, b, x))
        log_a = F.pad(log_a, (0, pad))
    n = (T + pad) // chunk
    c, b, x = c.reshape(Bsz, H, n, chunk, N), b.reshape(Bsz, H, n, chunk, N), x.reshape(Bsz, H, n, chunk, P)
    cum = log_a.reshape(Bsz, H, n, chunk).cumsum(-1)           # log decay from the chunk start
    causal = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=c.device))
    decay = (cum.unsqueeze(-1) - cum.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp()   # [B,H,n,C,C]
    intra = ((c @ b.transpose(-1, -2)) * decay) @ x             # [B, H, n, C, P]
    last = cum[..., -1:]                                        # [B, H, n, 1]
    c_in = c * cum.exp().unsqueeze(-1)
    b_out = b * (last - cum).exp().unsqueeze(-1)
    state = c.new_zeros(Bsz, H, N, P)
    outs = []
    for i in range(n):                                          # carry the state across chunks
        outs.append(intra[:, :, i] + c_in[:, :, i] @ state)
        state = state * last[:, :, i].exp().unsqueeze(-1) + b_out[:, :, i].transpose(-1, -2) @ x[:, :, i]
    return torch.stack(outs, 2).reshape(Bsz, H, n * chunk, P)[:, :, :T]


class Mamba2(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        inner, state = CONFIG["expand"] * d, CONFIG["d_state"]
        self.heads, self.inner, self.state, self.kernel = heads, inner, state, CONFIG["conv"]
        self.in_proj = nn.Linear(d, 2 * inner + 2 * state + heads, bias=False)
        conv_dim = inner + 2 * state
        self.conv = nn.Conv1d(conv_dim, conv_dim, self.kernel, groups=conv_dim)
        # step sizes start log-uniform in [1e-3, 1e-1] and decay rates A in [1, 16], as in the paper
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = RMSNorm(inner)
        self.out = nn.Linear(inner, d, bias=False)

    def forward(self, u):                                       # u: [B, T, D]
        B, T, _ = u.shape
        H, P = self.heads, self.inner // self.heads
        z, xbc, dt = self.in_proj(u).split([self.inner, self.inner + 2 * self.state, self.heads], dim=-1)
        xbc = F.silu(self.conv(F.pad(xbc.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2))   # causal
        x, b, c = xbc.split([self.inner, self.state, self.state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)                      # [B, T, H]
        log_a = (dt * -self.A_log.exp()).transpose(1, 2)        # [B, H, T], <= 0
        xh = x.view(B, T, H, P).transpose(1, 2)                 # [B, H, T, P]
        b, c = (t.unsqueeze(1).expand(B, H, T, self.state) for t in (b, c))
        # the chunked sums run in float32 whatever the autocast dtype: decays are products of many steps
        with torch.autocast(device_type=u.device.type, enabled=False):
            y = chunked_ssd(c.float(), b.float(), (xh * dt.transpose(1, 2).unsqueeze(-1)).float(), log_a.float(),
                            CONFIG["chunk"])
        y = y.to(u.dtype) + xh * self.D.view(1, H, 1, 1)
        y = y.transpose(1, 2).reshape(B, T, self.inner)
        return self.out(self.norm(y * F.silu(z)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm, self.mixer = RMSNorm(d), Mamba2(d, heads)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class Model(nn.Module):
    def __init__(self, vocab_size, d, layers, heads):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d)
        # two Mamba blocks per layer: a Mamba block has about half the parameters of an attention + MLP layer
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(2 * layers))
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
