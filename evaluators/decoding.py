"""The fixed model of the `decode` task, its training recipe and disk cache, and the two reference decoders.

The model is a small pre-norm character-level transformer (`CharTransformer`, bytes as
tokens, vocabulary 256), trained once per machine on the `charlm` corpus and cached on disk.
A decoding candidate receives it and must leave it unchanged. Its interface, which is part
of the candidate contract:

    model.embed_at(ids [B, T], start) -> h [B, T, d]    token + position embeddings of positions start..start+T-1
    model.blocks[i](h, past=None) -> (h, (k, v))         one transformer block; `past` is this layer's cache
                                                         (k, v), each [B, heads, T_past, d_head]; the returned
                                                         (k, v) are the cache extended by the new positions
                                                         (new positions attend to the whole past, causally
                                                         among themselves)
    model.final(h) -> logits [B, T, 256]                 final norm + output head
    model.forward(ids [B, T]) -> logits [B, T, 256]      the whole causal forward, no cache
    model.n_layers, model.exit_layer, model.max_len      depth; the layer after which `final` was also trained
                                                         to predict (self-speculation and early exit use it);
                                                         the longest sequence positions exist for
    model.embed, model.pos, model.norm, model.head       the modules themselves (nn.Embedding, nn.LayerNorm,
                                                         nn.Linear without bias)

A KV cache is a list with one (k, v) per layer; cropping it to n positions is
`[(k[:, :, :n], v[:, :, :n]) for k, v in cache]`. The training recipe adds the loss of
`final(h)` after `exit_layer` blocks (weight `EXIT_LOSS`), as LayerSkip does, so early-exit
drafts are usable.

Recipe and cache: the recipe (corpus hash, sizes, steps, seed, this module's `RECIPE_VERSION`)
is hashed into the cache key; `weights.npy` (every parameter, flattened in `state_dict`
order, float32) sits next to `meta.json` holding the weights' sha256. A cache entry that is
missing or whose weights do not hash to their recorded sha256 is retrained. Training uses
`TRAIN_THREADS` threads and a fixed seed: the same machine gets the same weights.

The references: `greedy_nocache` recomputes the whole sequence each step; `greedy_cached`
keeps a KV cache (what a library's `generate` does): the honest baseline a speed-up is
measured against. Both return int64 ids [max_new_tokens].

`paired_ratio` is the speed-up's statistic: the median of per-pass ratios of a reference's
seconds to a candidate's on the same pass's prompts, with a signed-rank interval.
What this module does not do: judge outputs (the host does, `evaluators.tasks.decode`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


RECIPE_VERSION = 1     # bump when the model or its training changes, so caches are rebuilt
EXIT_LOSS = 0.5        # weight of the early-exit head's loss (LayerSkip-style)
TRAIN_THREADS = 1      # fixed, so one machine always trains the same weights; one, because on busy cores more threads spin


class Block(nn.Module):
    """Pre-norm attention + MLP; `forward(h, past)` returns the new hidden states and the extended cache."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, h: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, D = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:                                   # [B, H, T_past, Dh] each
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        if T == 1:
            a = F.scaled_dot_product_attention(q, k, v)
        elif past is None or past[0].shape[2] == 0:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:                                                  # new positions see the whole past, causally each other
            Tp = k.shape[2] - T
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=h.device).tril(diagonal=Tp)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = h + self.proj(a.transpose(1, 2).reshape(B, T, D))
        h = h + self.fc2(F.gelu(self.fc1(self.ln2(h))))
        return h, (k, v)


class CharTransformer(nn.Module):
    """The decode task's fixed model; the interface is in the module docstring."""

    def __init__(self, d_model: int = 128, n_layers: int = 4, n_heads: int = 4, max_len: int = 320,
                 exit_layer: int = 2, vocab_size: int = 256):
        super().__init__()
        self.n_layers, self.exit_layer, self.max_len = n_layers, exit_layer, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def embed_at(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"positions up to {start + T} requested; the model has {self.max_len}")
        return self.embed(ids) + self.pos.weight[start:start + T]

    def final(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(h))

    def hidden(self, ids: torch.Tensor, start: int = 0) -> list[torch.Tensor]:
        """Hidden states after every block, [B, T, d] each (no cache), for positions start..start+T-1."""
        h, out = self.embed_at(ids, start), []
        for block in self.blocks:
            h, _ = block(h)
            out.append(h)
        return out

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.final(self.hidden(ids)[-1])


# --- references ------------------------------------------------------------------------
@torch.no_grad()
def greedy_nocache(model: CharTransformer, prompt_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding that recomputes the whole sequence for every new token: int64 [max_new_tokens]."""
    seq = prompt_ids.view(1, -1)
    for _ in range(max_new_tokens):
        nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    return seq[0, prompt_ids.numel():].clone()


@torch.no_grad()
def greedy_cached(model: CharTransformer, prompt_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with a KV cache (prefill, then one position per step): int64 [max_new_tokens]."""
    ids = prompt_ids.view(1, -1)
    h, cache = model.embed_at(ids, 0), []
    for block in model.blocks:
        h, kv = block(h)
        cache.append(kv)
    nxt = model.final(h[:, -1:]).argmax(-1)                    # [1, 1]
    out = [nxt]
    pos = ids.shape[1]
    for _ in range(max_new_tokens - 1):
        h = model.embed_at(nxt, pos)
        for i, block in enumerate(model.blocks):
            h, cache[i] = block(h, cache[i])
        nxt = model.final(h).argmax(-1)
        out.append(nxt)
        pos += 1
    return torch.cat(out, dim=1)[0]


@torch.no_grad()
def log_likelihood(model: CharTransformer, prompt_ids: torch.Tensor, new_ids: torch.Tensor) -> float:
    """Sum over the new tokens of log p(token | everything before it), in nats."""
    seq = torch.cat([prompt_ids.view(-1), new_ids.view(-1)]).view(1, -1)
    logp = torch.log_softmax(model(seq[:, :-1]).double(), dim=-1)[0]           # [T-1, V]
    P = prompt_ids.numel()
    return float(logp[P - 1:].gather(-1, seq[0, P:].unsqueeze(-1)).sum())


# --- paired timing -----------------------------------------------------------------------
def paired_ratio(reference: list[float], candidate: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high) of the per-pass ratios reference[k] / candidate[k] (seconds of the same pass's prompts).

    The estimate is the median of the ratios; the interval is the signed-rank one (Wilcoxon; Walsh averages of the
    log-ratios with the exact null distribution), distribution-free for a symmetric spread of the log-ratios. Below
    6 pairs no 95% interval exists: the range of the ratios is returned instead."""
    reference, candidate = [float(r) for r in reference], [float(c) for c in candidate]
    logs = [math.log(r) - math.log(c) for r, c in zip(reference, candidate, strict=True)]
    n = len(logs)
    if n == 0:
        raise ValueError("no paired passes")
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(n) for j in range(i, n))
    total = len(walsh)
    counts = [1] + [0] * total              # counts[t]: subsets of the ranks 1..n summing to t (the null of T+)
    for rank in range(1, n + 1):
        for t in range(total, rank - 1, -1):
            counts[t] += counts[t - rank]
    # cut: the largest t with P(T+ <= t) <= (1 - confidence) / 2; the interval is [W(cut+1), W(total-cut)]
    tail, cumulative, cut = (1 - confidence) / 2 * 2 ** n, 0, 0
    for t in range(total + 1):
        cumulative += counts[t]
        if cumulative > tail:
            break
        cut = t
    cut = min(cut, (total - 1) // 2)
    median = statistics.median(r / c for r, c in zip(reference, candidate))
    # a skewed spread can leave the median just outside the signed-rank interval: widen it to hold the estimate
    return median, min(median, math.exp(walsh[cut])), max(median, math.exp(walsh[total - 1 - cut]))


# --- weights: flat arrays, hashing, the disk cache ----------------------------------------
def flatten(model: nn.Module) -> np.ndarray:
    """Every parameter and buffer in `state_dict` order, as one float32 array."""
    return np.concatenate([t.detach().float().cpu().reshape(-1).numpy() for t in model.state_dict().values()])


def load_flat(model: nn.Module, flat: np.ndarray) -> nn.Module:
    """`model` with its state set from a `flatten` array; ValueError when the sizes disagree."""
    state, offset = model.state_dict(), 0
    total = sum(t.numel() for t in state.values())
    if flat.size != total:
        raise ValueError(f"the weights array has {flat.size} values; this model needs {total}")
    tensor = torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
    for name, value in state.items():
        state[name] = tensor[offset:offset + value.numel()].view_as(value).clone()
        offset += value.numel()
    model.load_state_dict(state)
    return model


def weights_digest(model: nn.Module) -> str:
    """sha256 over the model's parameters and buffers as float32 bytes."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def cache_dir() -> Path:
    """`~/.cache/archlab/decode`, or the system temp directory when home is not writable."""
    for base in (Path.home() / ".cache" / "archlab" / "decode", Path(tempfile.gettempdir()) / "archlab-decode"):
        try:
            base.mkdir(parents=True, exist_ok=True)
            if os.access(base, os.W_OK):
                return base
        except OSError:
            continue
    raise OSError("no writable cache directory for the decode model (tried ~/.cache/archlab and the temp dir)")


def recipe_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps({**recipe, "v": RECIPE_VERSION}, sort_keys=True).encode()).hexdigest()[:16]


def model_from_recipe(recipe: dict) -> CharTransformer:
    return CharTransformer(d_model=int(recipe["d_model"]), n_layers=int(recipe["n_layers"]),
                           n_heads=int(recipe["n_heads"]), max_len=int(recipe["max_len"]),
                           exit_layer=int(recipe["exit_layer"]))


def train(recipe: dict, corpus: np.ndarray) -> tuple[CharTransformer, dict]:
    """Train the model of `recipe` on byte array `corpus`; (model, stats). Deterministic on one machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        torch.manual_seed(int(recipe["seed"]))
        generator = torch.Generator().manual_seed(int(recipe["seed"]))
        model = model_from_recipe(recipe)
        steps, batch, T, lr = int(recipe["steps"]), int(recipe["batch_size"]), int(recipe["train_len"]), float(recipe["lr"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
        data = torch.from_numpy(corpus.astype(np.int64))
        started, losses = time.perf_counter(), []
        for step in range(steps):
            warm = max(1, steps // 20)
            scale = (step + 1) / warm if step < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            start = torch.randint(0, len(data) - T - 1, (batch,), generator=generator)
            window = data[start.unsqueeze(1) + torch.arange(T + 1)]
            x, y = window[:, :-1], window[:, 1:]
            # a random offset per step, so every position the decoder reaches is trained (the text has no start)
            offset = int(torch.randint(0, model.max_len - T + 1, (1,), generator=generator))
            hidden = model.hidden(x, offset)
            loss = F.cross_entropy(model.final(hidden[-1]).reshape(-1, 256), y.reshape(-1))
            exit_loss = F.cross_entropy(model.final(hidden[model.exit_layer - 1]).reshape(-1, 256), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            (loss + EXIT_LOSS * exit_loss).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        tail = losses[-max(1, steps // 10):]
        return model, {"train_loss": sum(tail) / len(tail), "train_seconds": time.perf_counter() - started}
    finally:
        torch.set_num_threads(threads)


def cached_weights(recipe: dict, corpus: np.ndarray, directory: Path | None = None) -> tuple[np.ndarray, dict]:
    """(flat weights, meta) for `recipe`, from the disk cache or trained now and stored.

    An entry whose weights do not hash to the sha256 in its meta.json is retrained."""
    folder = (directory or cache_dir()) / recipe_key(recipe)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:        # one process trains; the others wait, then read its result
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _cached_weights(recipe, corpus, folder)


def _cached_weights(recipe: dict, corpus: np.ndarray, folder: Path) -> tuple[np.ndarray, dict]:
    weights, meta_path = folder / "weights.npy", folder / "meta.json"
    if weights.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            flat = np.load(weights, allow_pickle=False)
            if meta.get("weights_sha256") == array_digest(flat) and meta.get("recipe") == recipe:
                return flat, meta
        except (ValueError, OSError, json.JSONDecodeError):
            pass                                # a damaged entry is rebuilt below
    model, stats = train(recipe, corpus)
    flat = flatten(model)
    meta = {"recipe": recipe, "weights_sha256": array_digest(flat), **stats}
    tmp = folder / f"weights.tmp{os.getpid()}.npy"
    np.save(tmp, flat, allow_pickle=False)
    os.replace(tmp, weights)
    tmp_meta = folder / f"meta.tmp{os.getpid()}.json"
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, meta_path)
    return flat, meta
