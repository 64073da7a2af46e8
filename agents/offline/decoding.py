"""The offline engine for decoding tasks: a catalogue of inference techniques as real code, combined and weighed.

A technique genome is a small dict (`DEFAULT`): whether a KV cache is kept, how tokens are
drafted for batched verification (`none`, `ngram` prompt lookup, `early_exit`
self-speculation, or `ngram+early_exit`: prompt lookup with self-speculative drafts where no
n-gram matches), the draft length and n-gram size, how many n-gram branches are verified at
once (`branches` > 1: parallel drafting), dynamic int8 quantisation of the linear layers
(`quant`, lossy), and early exit on confidence (`exit_conf` > 0, lossy). `render(genome)`
writes it as a self-contained candidate module honouring the decode contract
(`generate(model, prompt_ids, max_new_tokens)`, see `evaluators.tasks.decode`); only the
code the genome uses is written.

The engine (`DecodingEngine`, the interface of `agents.offline.engine.OfflineEngine`):
- planner: lists every technique the catalogue can add to (or tune in) the parent's genome,
  drops genomes already tried, weighs each kind by its prior and by what the run measured
  (a kind whose candidates beat their parents is raised, one that lost, failed or came out
  "different" is lowered; adding a technique to a combination is weighed by how that
  technique did on its own), and draws one with a seeded generator. Parents come from the
  run's ranking, so once the single techniques are measured on the baseline the best of
  them becomes the parent and the catalogue proposes combinations on it.
- coder: `render`; fixer: gives up (the modules are generated, a failure is a finding);
- analyst: speed-up against cached greedy with its interval, exact match, and the change
  against the parent by the run's objective (`agents.scoring`).
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass

from agents import scoring
from agents.engine import PlanContext
from agents.offline.engine import NoProposal, genome_hash
from agents.records import Candidate, Plan
from evaluators.fitness import Objective
from knowledge.records import Finding
from wire.jobs import EvalResult
from wire.task import TaskSpec

NOISE = 0.05  # a finding's speed-up change counts as evidence only beyond this, when it names no noise floor
DRAFTS = ("none", "ngram", "early_exit", "ngram+early_exit")
DEFAULT: dict = {"cache": True, "draft": "none", "draft_len": 8, "ngram": 3, "branches": 1, "quant": False,
                 "exit_conf": 0.0}
TECHNIQUES = ("kv_cache", "prompt_lookup", "self_speculative", "int8_dynamic", "parallel_drafting",
              "early_exit_confidence", "lookup_with_fallback", "draft_length")
# prior weight of each kind: prompt lookup and self-speculation are the usual lossless winners (Saxena 2023;
# Leviathan et al. 2023; LayerSkip, Elhoushi et al. 2024), and together they draft on every step (lookup where the
# text repeats, the early exit elsewhere); lossy kinds start lower because the default tolerance is zero mismatches
PRIORS = {"kv_cache": 3.0, "prompt_lookup": 2.5, "self_speculative": 1.5, "lookup_with_fallback": 2.0,
          "parallel_drafting": 1.0, "draft_length": 0.8, "int8_dynamic": 0.6, "early_exit_confidence": 0.5}


def validate(genome: dict | None) -> dict:
    """A complete, consistent copy of a technique genome; ValueError naming the bad field."""
    g = {**DEFAULT, **(genome or {})}
    unknown = sorted(set(g) - set(DEFAULT))
    if unknown:
        raise ValueError(f"unknown technique fields {unknown}; known: {sorted(DEFAULT)}")
    if g["draft"] not in DRAFTS:
        raise ValueError(f"draft={g['draft']!r} is not one of {DRAFTS}")
    if g["draft"] != "none" and not g["cache"]:
        raise ValueError("drafting verifies against a KV cache; set cache=True")
    if g["exit_conf"] and (g["draft"] != "none" or not g["cache"]):
        raise ValueError("early exit on confidence runs on plain cached decoding (no drafting)")
    if g["branches"] > 1 and "ngram" not in g["draft"]:
        raise ValueError("parallel drafting verifies several n-gram continuations; it needs ngram drafting")
    return g


def techniques(genome: dict) -> list[str]:
    """The techniques a genome uses, in words."""
    g = validate(genome)
    out = ["kv_cache"] if g["cache"] else ["no_cache"]
    if "ngram" in g["draft"]:
        out.append(f"prompt_lookup(n={g['ngram']}, k={g['draft_len']})")
    if "early_exit" in g["draft"]:
        out.append(f"self_speculative(k={g['draft_len']})")
    if g["branches"] > 1:
        out.append(f"parallel_drafting({g['branches']})")
    if g["quant"]:
        out.append("int8_dynamic")
    if g["exit_conf"]:
        out.append(f"early_exit_confidence({g['exit_conf']:g})")
    return out


# --- the module renderer --------------------------------------------------------------------
_HEADER = '''\
"""{title}

{motivation}
"""
import torch

TECHNIQUE = {config}
'''

_PREPARE_PLAIN = '''
def prepare(model):
    return model
'''

_PREPARE_QUANT = '''
_QUANTIZED = {}


def prepare(model):
    """A dynamically int8-quantised copy of the model's linear layers, made once (the model itself is untouched)."""
    key = id(model)
    if key not in _QUANTIZED:
        _QUANTIZED[key] = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                                 inplace=False)
    return _QUANTIZED[key]
'''

_BLOCKS = '''
def run_blocks(net, ids, cache, start, first=0, last=None):
    """Run ids [B, T] at positions start.. through blocks first..last-1, extending `cache` in place; hidden [B, T, d]."""
    h = net.embed_at(ids, start)
    for i in range(first, net.n_layers if last is None else last):
        h, cache[i] = net.blocks[i](h, cache[i])
    return h


def crop(cache, length):
    """Keep the first `length` positions of every layer's cache."""
    for i, kv in enumerate(cache):
        if kv is not None:
            cache[i] = (kv[0][:, :, :length], kv[1][:, :, :length])
'''

_NOCACHE = '''
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens):
    """Greedy decoding, the whole sequence recomputed for every new token."""
    net = prepare(model)
    seq = prompt_ids.view(1, -1)
    for _ in range(max_new_tokens):
        nxt = net(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    return seq[0, prompt_ids.numel():].clone()
'''

_CACHED = '''
@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens):
    """Greedy decoding with a KV cache: the prompt once, then one position per step."""
    net = prepare(model)
    cache = [None] * net.n_layers
    h = run_blocks(net, prompt_ids.view(1, -1), cache, 0)
    nxt = net.final(h[:, -1:]).argmax(-1)                       # [1, 1]
    out = [nxt]
    pos = prompt_ids.numel()
    for _ in range(max_new_tokens - 1):
        h = run_blocks(net, nxt, cache, pos)
        nxt = net.final(h).argmax(-1)
        out.append(nxt)
        pos += 1
    return torch.cat(out, dim=1)[0]
'''

_EXIT_CONF = '''
EXIT_CONF = TECHNIQUE["exit_conf"]   # emit from the early-exit layer when its top probability reaches this
MAX_DEFERRED = 8                     # positions whose deep layers may wait before they are caught up


@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens):
    """Cached greedy decoding that stops after `exit_layer` blocks when the head is confident there (CALM-style);
    the deep layers of the skipped positions run later, all at once, so their cache stays exact."""
    net = prepare(model)
    E = net.exit_layer
    cache = [None] * net.n_layers
    h = run_blocks(net, prompt_ids.view(1, -1), cache, 0)
    nxt = net.final(h[:, -1:]).argmax(-1)
    out, deferred = [nxt], []
    pos = prompt_ids.numel()
    for _ in range(max_new_tokens - 1):
        h = run_blocks(net, nxt, cache, pos, 0, E)            # shallow layers, every position
        probs = torch.softmax(net.final(h)[0, -1], dim=-1)
        if probs.max() >= EXIT_CONF and len(deferred) < MAX_DEFERRED:
            nxt = probs.argmax().view(1, 1)
            deferred.append(h)
        else:
            hd = torch.cat(deferred + [h], dim=1)                 # deep layers for the deferred positions, then this
            for i in range(E, net.n_layers):
                hd, cache[i] = net.blocks[i](hd, cache[i])
            nxt = net.final(hd[:, -1:]).argmax(-1)
            deferred = []
        out.append(nxt)
        pos += 1
    return torch.cat(out, dim=1)[0]
'''

_LOOKUP = '''
NGRAM = TECHNIQUE["ngram"]            # longest suffix looked up in the text so far


def lookup(seq, k, branches=1):
    """Up to `branches` distinct continuations (k tokens each at most) of earlier occurrences of the text's last
    n tokens, n from NGRAM down to 1, most recent occurrence first (prompt-lookup decoding)."""
    found = []
    for n in range(NGRAM, 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start:start + n] == tail:
                follow = seq[start + n:start + n + k]
                if follow and follow not in found:
                    found.append(follow)
                    if len(found) >= branches:
                        return found
        if found:
            return found
    return found
'''

_SHALLOW = '''
def draft_shallow(net, seq, cache, k):
    """k tokens from the first `exit_layer` blocks and the shared head (LayerSkip-style self-speculation);
    the draft extends copies of the shallow caches, never the cache being verified against."""
    shallow = list(cache[:net.exit_layer])
    pos, tok, out = len(seq) - 1, seq[-1], []
    device = net.embed.weight.device
    for j in range(k):
        h = net.embed_at(torch.tensor([[tok]], device=device), pos + j)
        for i in range(net.exit_layer):
            h, shallow[i] = net.blocks[i](h, shallow[i])
        tok = int(net.final(h)[0, -1].argmax())
        out.append(tok)
    return out
'''

_VERIFY_ONE = '''
def verify(net, seq, drafts, cache):
    """Run the pending token and one draft through the whole model at once; (accepted draft tokens, next token)."""
    draft = drafts[0] if drafts else []
    pos = len(seq) - 1
    ids = torch.tensor([seq[-1:] + draft], device=net.embed.weight.device)
    preds = net.final(run_blocks(net, ids, cache, pos))[0].argmax(-1).tolist()   # preds[i] follows ids[i]
    accepted = 0
    while accepted < len(draft) and draft[accepted] == preds[accepted]:
        accepted += 1
    crop(cache, pos + 1 + accepted)
    return draft[:accepted], preds[accepted]
'''

_VERIFY_BATCH = '''
def verify(net, seq, drafts, cache):
    """Verify several drafts as one batch (parallel drafting): the longest accepted one wins; its cache row is kept."""
    if len(drafts) <= 1:
        drafts = drafts or [[]]
    k = min(len(d) for d in drafts)
    drafts = [d[:k] for d in drafts]
    pos, B = len(seq) - 1, len(drafts)
    ids = torch.tensor([seq[-1:] + d for d in drafts], device=net.embed.weight.device)     # [B, 1 + k]
    wide = [None if kv is None else (kv[0].expand(B, -1, -1, -1), kv[1].expand(B, -1, -1, -1)) for kv in cache]
    preds = net.final(run_blocks(net, ids, wide, pos)).argmax(-1).tolist()                 # [B][1 + k]
    best, accepted = 0, -1
    for b, d in enumerate(drafts):
        a = 0
        while a < k and d[a] == preds[b][a]:
            a += 1
        if a > accepted:
            best, accepted = b, a
    for i, kv in enumerate(wide):
        cache[i] = (kv[0][best:best + 1, :, :pos + 1 + accepted], kv[1][best:best + 1, :, :pos + 1 + accepted])
    return drafts[best][:accepted], preds[best][accepted]
'''

_SPECULATE = '''
DRAFT_LEN = TECHNIQUE["draft_len"]    # tokens drafted per verification step


@torch.no_grad()
def generate(model, prompt_ids, max_new_tokens):
    """Greedy decoding with drafted tokens verified in one batched forward: the output is exactly greedy's
    (up to float rounding), and each verification step yields the accepted drafts plus one token."""
    net = prepare(model)
    seq = prompt_ids.view(-1).tolist()
    P = len(seq)
    cache = [None] * net.n_layers
    if P > 1:                                   # the last prompt token stays pending: known, not yet run
        run_blocks(net, prompt_ids.view(1, -1)[:, :-1], cache, 0)
    while len(seq) - P < max_new_tokens:
        k = min(DRAFT_LEN, max_new_tokens - (len(seq) - P) - 1)
        drafts = {propose} if k > 0 else []
        accepted, nxt = verify(net, seq, drafts, cache)
        seq += accepted + [nxt]
    return torch.tensor(seq[P:P + max_new_tokens], dtype=torch.long, device=prompt_ids.device)
'''

_PROPOSE = {
    "ngram": "lookup(seq, k, BRANCHES)",
    "early_exit": "[draft_shallow(net, seq, cache, k)]",
    "ngram+early_exit": "lookup(seq, k, BRANCHES) or [draft_shallow(net, seq, cache, k)]",
}


def render(genome: dict, title: str = "A decoding procedure.", motivation: str = "") -> str:
    """The candidate module for `genome`, as Python source."""
    g = validate(genome)
    config = json.dumps(g, sort_keys=True).replace("false", "False").replace("true", "True")
    motivation = motivation.strip() or title.strip()
    parts = [_HEADER.format(title=title.strip(), motivation=_wrap(motivation), config=config),
             _PREPARE_QUANT if g["quant"] else _PREPARE_PLAIN]
    if not g["cache"]:
        parts.append(_NOCACHE)
    elif g["draft"] == "none":
        parts += [_BLOCKS, _EXIT_CONF if g["exit_conf"] else _CACHED]
    else:
        parts.append(_BLOCKS)
        if "ngram" in g["draft"]:
            parts.append(_LOOKUP + f"BRANCHES = {g['branches']}               # n-gram continuations verified at once\n")
        if "early_exit" in g["draft"]:
            parts.append(_SHALLOW)
        parts += [_VERIFY_BATCH if g["branches"] > 1 else _VERIFY_ONE,
                  _SPECULATE.replace("{propose}", _PROPOSE[g["draft"]])]
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def _wrap(text: str, width: int = 90) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line] if line else lines)


# --- the catalogue of changes -----------------------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    change: str
    detail: str
    genome: dict
    motivation: str
    expected: str
    adds: str = ""          # the single technique this change adds to a genome that already has one ("" if none)


def proposals(genome: dict) -> list[Proposal]:
    """Every change the catalogue can make to `genome` that yields a valid, different genome."""
    g = validate(genome)
    combo = bool(g["draft"] != "none" or g["quant"] or g["exit_conf"])
    out: list[Proposal] = []

    def add(change: str, detail: str, new: dict, motivation: str, expected: str) -> None:
        try:
            new = validate({**g, **new})
        except ValueError:
            return
        if new != g:
            out.append(Proposal(change, detail, new, motivation, expected, change if combo else ""))

    add("kv_cache", "keep a KV cache", {"cache": True},
        "Recomputing every earlier position for each new token is quadratic work; a KV cache keeps each layer's keys "
        "and values, so a step costs one position.", "large speed-up over no-cache decoding, identical output")
    if g["draft"] == "none" and g["cache"]:
        for n, k in ((3, 8), (2, 4), (3, 12)):
            add("prompt_lookup", f"prompt-lookup drafting (n={n}, k={k})",
                {"draft": "ngram", "ngram": n, "draft_len": k, "exit_conf": 0.0},
                "Text repeats itself (names, phrases, the model's own loops): tokens that followed an earlier "
                "occurrence of the last n-gram are a free draft, and verifying k drafts costs one batched forward "
                "(prompt-lookup decoding).", "speed-up where the text repeats, output identical to greedy")
        for k in (4, 6):
            add("self_speculative", f"self-speculative early-exit drafting (k={k})",
                {"draft": "early_exit", "draft_len": k, "exit_conf": 0.0},
                "The first half of the layers with the shared head (trained as an early exit) drafts k tokens "
                "cheaply; the full model verifies them in one pass (LayerSkip).",
                "speed-up if the early exit agrees often enough, output identical to greedy")
        for conf in (0.9, 0.97):
            add("early_exit_confidence", f"early exit on confidence >= {conf:g}", {"exit_conf": conf},
                "When the early-exit head is already confident, the deep layers add little for that token (CALM); "
                "skipping them saves work but may change the output.", "faster, some tokens differ (lossy)")
    if g["draft"] == "ngram":
        add("lookup_with_fallback", "self-speculative drafts where no n-gram matches", {"draft": "ngram+early_exit"},
            "Prompt lookup drafts nothing when the last n-gram is new; the early exit can draft those steps instead.",
            "more accepted tokens per step, output identical to greedy")
    if "ngram" in g["draft"] and g["branches"] == 1:
        for b in (3,):
            add("parallel_drafting", f"verify {b} n-gram continuations at once", {"branches": b},
                "Different earlier occurrences continue differently; verifying several in one batched forward "
                "keeps the longest accepted.", "more accepted tokens per step at a wider verification")
    if g["draft"] != "none":
        for k in sorted({max(2, g["draft_len"] // 2), g["draft_len"] * 2} - {g["draft_len"]}):
            if k <= 16:
                add("draft_length", f"draft length {g['draft_len']} -> {k}", {"draft_len": k},
                    "Longer drafts win more per step when they are accepted and waste a wider verification when "
                    "they are not; the best length depends on the acceptance rate.", "a different speed-up")
    if not g["quant"]:
        add("int8_dynamic", "dynamic int8 quantisation of the linear layers", {"quant": True},
            "Int8 weights with dynamic activation scales make each matrix product cheaper on CPU (and the model "
            "smaller), at the price of rounding that may flip close greedy choices.", "faster, a few tokens may differ")
    return out


# --- the engine --------------------------------------------------------------------------------
class DecodingEngine:
    name = "offline"

    def __init__(self, seed: int, objective: Objective | None = None):
        self.seed = seed
        self.objective = objective or Objective(metric="speedup")

    def attach(self, lab) -> None:
        """Score by the run's objective."""
        self.objective = lab.objective

    def change_weights(self, context: PlanContext) -> dict[str, float]:
        """Prior weights, updated by the run's measured results (gains raise a kind; losses, failures and
        "different" outputs lower it)."""
        weights = {kind: PRIORS[kind] for kind in TECHNIQUES}
        for kind, factor in self.evidence(context.candidates).items():
            weights[kind] *= factor
        for finding, distance in context.findings:
            if finding.change in weights:
                closeness = max(0.0, 1.0 - distance)
                gain = finding.evidence.get(f"delta_{self.objective.metric}", 0.0)
                if abs(gain) <= finding.evidence.get(f"floor_{self.objective.metric}", NOISE):
                    gain = 0.0                     # measured inside the noise floor: no evidence either way
                bad = finding.kind == "failure" or gain < 0
                weights[finding.change] *= 1.0 + closeness * (-0.3 if bad else 0.3 if gain > 0 else 0.0)
        return weights

    def evidence(self, candidates: list[Candidate], singles: bool = False) -> dict[str, float]:
        """Per technique kind, the factor the run's measured candidates of that kind earned it; with `singles`,
        only those applied to a baseline (the technique on its own)."""
        factors: dict[str, float] = {}
        by_id = {c.id: c for c in candidates}
        floors = scoring.noise_floors(candidates, self.objective)
        for c in candidates:
            parent = by_id.get(c.parent_ids[0]) if c.parent_ids else None
            if c.change not in PRIORS or (singles and (parent is None or parent.status != "baseline")):
                continue
            factor = factors.get(c.change, 1.0)
            if c.status == "failed":
                factor *= 0.5
            elif c.feasible is False:
                factor *= 0.6
            elif parent is not None:
                found = scoring.verdict(c, parent, self.objective, floors)
                if found is not None:
                    factor *= 1.5 if found.better else 0.7 if found.worse else 0.9
            factors[c.change] = factor
        return factors

    def plan(self, context: PlanContext) -> Plan:
        rng = random.Random(f"{self.seed}:{context.round}:{context.parent.id}")
        try:
            parent_genome = validate(context.parent.genome)
        except ValueError as exc:
            raise NoProposal(f"{context.parent.id} has no technique genome this engine can change: {exc}") from None
        options = [p for p in proposals(parent_genome) if genome_hash(p.genome) not in context.tried]
        if not options:
            raise NoProposal(f"every technique change to {context.parent.id} has been tried")
        weights = self.change_weights(context)
        if any(p.adds for p in options):     # a combination: weigh each added technique by how it did on its own
            for kind, factor in self.evidence(context.candidates, singles=True).items():
                weights[kind] *= factor
        for _ in range(context.slot % len(options) + 1):        # slot k takes the k-th draw without replacement
            kinds = sorted({p.change for p in options})
            kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            choice = rng.choice([p for p in options if p.change == kind])
            options = [p for p in options if p is not choice]
        return Plan(title=f"{context.parent.id}: {choice.detail}", motivation=choice.motivation, change=choice.change,
                    detail=choice.detail, expected=choice.expected, parent_id=context.parent.id,
                    genome=choice.genome, retrieved=[f.id for f, _ in context.findings])

    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec, *, candidates: list[Candidate] | None = None) -> str:
        return render(plan.genome or {}, title=plan.title, motivation=plan.motivation)

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, *, parent: Candidate | None = None,
            spec: TaskSpec | None = None, candidates: list[Candidate] | None = None) -> tuple[Plan, str] | None:
        return None        # the modules are generated from the catalogue: a failure is a finding, not a typo

    def analyze(self, candidate: Candidate, parent: Candidate | None,
                baselines: list[Candidate]) -> tuple[str, list[Finding]]:
        if candidate.status == "failed":
            result = list(candidate.evaluations.values())[-1] if candidate.evaluations else None
            reason = (result.message.splitlines() or [""])[0] if result else "no result"
            text = (f"Negative result: '{candidate.change}' ({_detail(candidate)}) failed with status "
                    f"{result.status if result else 'failed'}: {reason}")
            return text, [Finding(id=f"{candidate.run_id}-{candidate.id}-failure", text=text, kind="failure",
                                  task=candidate.task, candidate_ids=[candidate.id], change=candidate.change)]
        metric = self.objective.metric
        fidelity = next((f for f in ("full", "short") if candidate.metric(metric, f) is not None), "short")
        m = candidate.evaluations[fidelity].metrics if fidelity in candidate.evaluations else {}
        parts = [f"{candidate.id} uses {', '.join(techniques(candidate.genome or {}))} ({_detail(candidate)})."]
        if "speedup" in m:
            passes = f" over {m['passes']:.0f} paired passes" if "passes" in m else ""
            versus = f", {m['speedup_nocache']:.2f}x no-cache greedy" if "speedup_nocache" in m else ""
            parts.append(f"At {fidelity}: {m['speedup']:.2f}x the speed of cached greedy decoding (~95% interval "
                         f"{m['speedup_ci_low']:.2f} to {m['speedup_ci_high']:.2f}{passes}){versus}, "
                         f"{m['tokens_per_second']:.0f} tokens/s; exact match "
                         f"{m['exact_match']:.1%} of tokens, {m['sequence_match']:.0%} of sequences.")
        if candidate.feasible is False:
            parts.append(f"Its output is different, not faster: {'; '.join(candidate.violations)}.")
        evidence = {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        floors = scoring.noise_floors(baselines, self.objective)     # the baselines' seeds: the run's noise floor
        found = scoring.verdict(candidate, parent, self.objective, floors) if parent is not None else None
        if found is not None:
            evidence.update({k: v for k, v in ((f"delta_{metric}", found.delta), (f"floor_{metric}", found.floor))
                             if v is not None and math.isfinite(v)})
            parts.append(f"Against its parent {parent.id}, {metric} went from {found.other:.2f} to "
                         f"{found.value:.2f}, {found.text()}: the change {found.trend()}.")
        text = " ".join(parts)
        return text, [Finding(id=f"{candidate.run_id}-{candidate.id}-insight", text=text, kind="insight",
                              task=candidate.task, candidate_ids=[candidate.id], evidence=evidence,
                              change=candidate.change)]


def _detail(candidate: Candidate) -> str:
    return re.sub(r"^[^:]*:\s*", "", candidate.title)


BASELINES: dict[str, dict] = {"nocache_greedy": {"cache": False}, "cached_greedy": {"cache": True}}


def baselines() -> dict[str, tuple[dict, str]]:
    """The decoding baselines: {name: (genome, source)}; the references as candidates a technique starts from."""
    return {name: (validate(genome), render(genome, title=f"Reference: {name.replace('_', ' ')}.",
                                            motivation="The reference a decoding technique is measured against."))
            for name, genome in BASELINES.items()}
