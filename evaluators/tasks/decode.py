"""Inference techniques over a fixed trained char-LM: how much faster a decoding procedure produces the same text.

The model is a small character-level transformer (`evaluators.decoding.CharTransformer`,
interface in that module's docstring), trained once per machine on the `charlm` corpus's
training split and cached on disk under `~/.cache/archlab/decode` (key: the recipe's hash;
the weights' sha256 is checked on load, and a missing or mismatched entry is retrained,
about a minute on two cores). The prompts are a fixed, seeded set of `prompt_len`-byte
windows of the corpus's held-out split.

Candidate contract: a module with a top-level

    generate(model, prompt_ids, max_new_tokens) -> token ids

`prompt_ids` is a 1-D `torch.long` tensor [P] of byte values; the result must be a 1-D
`torch.long` tensor of exactly `max_new_tokens` ids in [0, 256): the continuation only, not
the prompt. `model` must not be changed (its weights are hashed before and after; work on a
copy, e.g. `torch.ao.quantization.quantize_dynamic(model, inplace=False)`). Any state kept
between calls must not depend on the prompts (a cache of outputs is not a technique).

Scoring, in the sandbox (`evaluators.decoding_job`): the two references are timed first,
before the candidate is imported — greedy decoding without a cache and greedy decoding with
a KV cache — then the candidate, each over `prompts` prompts per pass with the `bench`
method (a warm-up pass, then repeats until the median's 95% interval is within 5%). Every
pass decodes fresh prompts, and every id the candidate produced in any pass comes back.
On the host (`judge`): the ids are compared with the cached-greedy reference the host
computed itself (it never enters the sandbox), giving `exact_match` (per token),
`sequence_match` (per prompt) and `mismatch_rate` (1 - exact_match); the model's
log-likelihood of the produced text (`loglik_per_token`, nats, next to the reference's);
and the quality metric `speedup` = median seconds per pass of cached greedy / the
candidate's, with `speedup_ci_low/high` from the medians' intervals, `speedup_nocache`
against the no-cache reference, `tokens_per_second` and `latency_ms_per_token`.

A candidate whose `mismatch_rate` is over `match_tolerance` (task option, default 0:
identical output) is "different", not faster: the run's default objective limits
`mismatch_rate` to it, so such a candidate is infeasible and ranks below every feasible one.
The `check` fidelity decodes `check_new_tokens` tokens of two prompts and holds the output to
the contract; `short` and `full` time `prompts` and `full_prompts` prompts per pass.

Refused with an actionable message (status `invalid`): a wrong length, dtype or range; a
model whose weights changed; a replaced timer (`time.perf_counter` and friends are bound
before the candidate is imported, and checked after); timings that claim more seconds than
the host measured for the whole job; a weights file changed on disk. Loops and unbounded
allocation end as `timeout` and `oom` like any other job.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from evaluators import decoding
from evaluators.tasks.base import Task
from evaluators.tasks.charlm import CORPUS_BYTES, read_corpus, split_blocks
from wire.jobs import EvalJob, EvalResult
from wire.task import Budget, TaskSpec

DECODED_MAX_BYTES = 16 * 1024 * 1024
PROCEDURES = ("nocache", "cached", "candidate")     # the runner's timing metrics are prefixed with these
MODEL_KEYS = ("d_model", "n_layers", "n_heads", "exit_layer", "max_len", "steps", "batch_size", "train_len", "lr",
              "seed")


class Decode(Task):
    name = "decode"
    metric = "speedup"
    family = "decoding"     # known without building the spec (which may train the model)

    def __init__(self):
        self._weights: dict[str, np.ndarray] = {}       # weights sha256 -> flat weights
        self._models: dict[str, decoding.CharTransformer] = {}
        self._references: dict[tuple, np.ndarray] = {}  # (weights sha, fidelity, rows, new tokens) -> ids

    # --- the spec ----------------------------------------------------------------------
    def default_spec(self, **overrides) -> TaskSpec:
        corpus = str(overrides.pop("corpus", "stdlib"))
        max_bytes = int(overrides.pop("corpus_bytes", CORPUS_BYTES))
        recipe = {"d_model": int(overrides.pop("d_model", 96)), "n_layers": int(overrides.pop("n_layers", 4)),
                  "n_heads": 4, "max_len": 256, "steps": int(overrides.pop("train_steps", 800)), "batch_size": 32,
                  "train_len": 64, "lr": 4e-3, "seed": int(overrides.pop("model_seed", 0))}
        recipe["exit_layer"] = int(overrides.pop("exit_layer", max(1, recipe["n_layers"] // 2)))
        data = {"prompt_len": int(overrides.pop("prompt_len", 64)),
                "max_new_tokens": int(overrides.pop("max_new_tokens", 128)),
                "check_new_tokens": int(overrides.pop("check_new_tokens", 16)),
                "max_repeats": int(overrides.pop("max_repeats", 8)),
                "match_tolerance": float(overrides.pop("match_tolerance", 0.0)),
                "time_seconds": float(overrides.pop("time_seconds", 8.0))}
        prompts = {"check": 2, "short": int(overrides.pop("prompts", 6)), "full": int(overrides.pop("full_prompts", 16))}
        if overrides:
            raise ValueError(f"unknown decode settings: {', '.join(sorted(overrides))}; known: corpus, corpus_bytes, "
                             "d_model, n_layers, exit_layer, train_steps, model_seed, prompt_len, max_new_tokens, "
                             "check_new_tokens, prompts, full_prompts, max_repeats, match_tolerance, time_seconds")
        if not 0 <= data["match_tolerance"] <= 1:
            raise ValueError(f"match_tolerance={data['match_tolerance']} must be a share of tokens in [0, 1]")
        if data["prompt_len"] + data["max_new_tokens"] + 32 > recipe["max_len"]:
            raise ValueError(f"prompt_len + max_new_tokens = {data['prompt_len'] + data['max_new_tokens']} leaves no "
                             f"room for drafts within the model's {recipe['max_len']} positions; shorten them")
        text = read_corpus(corpus, max_bytes)
        sha = hashlib.sha256(text).hexdigest()
        train, held = split_blocks(text)
        recipe["corpus_sha256"] = sha
        flat, meta = decoding.cached_weights(recipe, train)
        self._weights[meta["weights_sha256"]] = flat
        # a budget's `steps` is the number of prompts decoded per timed pass at that fidelity
        budgets = {f: Budget(steps=n, batch_size=1, lr=1.0) for f, n in prompts.items()}
        spec_data = {"corpus": corpus, "corpus_bytes": max_bytes, "corpus_sha256": sha, "corpus_size": len(text),
                     "weights_sha256": meta["weights_sha256"], "train_loss": float(meta["train_loss"]),
                     **{f"model_{k}": recipe[k] for k in MODEL_KEYS}, **data}
        spec = TaskSpec(name=self.name, family="decoding", vocab_size=256,
                        seq_len=data["prompt_len"] + data["max_new_tokens"], data=spec_data, seed=0,
                        heldout_size=prompts["short"], max_params=10_000_000, budgets=budgets)
        self._held = {sha: held}
        return spec

    def recipe(self, spec: TaskSpec) -> dict:
        recipe = {k: spec.data[f"model_{k}"] for k in MODEL_KEYS}
        return {**recipe, "corpus_sha256": spec.data["corpus_sha256"]}

    def prompt_count(self, spec: TaskSpec, fidelity: str) -> int:
        return spec.budgets["check" if fidelity == "check" else fidelity if fidelity in spec.budgets else "short"].steps

    def new_tokens(self, spec: TaskSpec, fidelity: str) -> int:
        return int(spec.data["check_new_tokens" if fidelity in ("check", "proxy") else "max_new_tokens"])

    def passes(self, spec: TaskSpec, fidelity: str) -> int:
        """Prompt sets a job may decode: one for a check; the warm-up plus `max_repeats` for a timed fidelity."""
        return 1 if fidelity in ("check", "proxy") else 1 + int(spec.data["max_repeats"])

    # --- the model, both sides ----------------------------------------------------------
    def flat_weights(self, spec: TaskSpec) -> np.ndarray:
        sha = str(spec.data["weights_sha256"])
        if sha not in self._weights:
            text = read_corpus(str(spec.data["corpus"]), int(spec.data["corpus_bytes"]))
            flat, meta = decoding.cached_weights(self.recipe(spec), split_blocks(text)[0])
            if meta["weights_sha256"] != sha:
                raise ValueError(f"the decode model now hashes to {meta['weights_sha256'][:12]}, not the spec's "
                                 f"{sha[:12]} (retrained on another machine or torch version?); make a new spec")
            self._weights[sha] = flat
        return self._weights[sha]

    def model(self, spec: TaskSpec) -> decoding.CharTransformer:
        """The task's model in eval mode, without gradients; one shared instance per weights hash."""
        sha = str(spec.data["weights_sha256"])
        if sha not in self._models:
            model = decoding.load_flat(decoding.model_from_recipe(self.recipe(spec)), self.flat_weights(spec))
            model.eval().requires_grad_(False)
            self._models[sha] = model
        return self._models[sha]

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        return {"weights": self.flat_weights(spec)}

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        if "weights" in files:
            self._weights[str(spec.data["weights_sha256"])] = files["weights"].astype(np.float32)

    # --- prompts and references (host) ----------------------------------------------------
    def prompts(self, spec: TaskSpec, fidelity: str) -> np.ndarray:
        """int64 [passes x prompts, prompt_len]: seeded windows of the held-out text; fidelities draw apart."""
        sha = str(spec.data["corpus_sha256"])
        held = getattr(self, "_held", {}).get(sha)
        if held is None:
            text = read_corpus(str(spec.data["corpus"]), int(spec.data["corpus_bytes"]))
            held = split_blocks(text)[1]
            self._held = {**getattr(self, "_held", {}), sha: held}
        rows = self.passes(spec, fidelity) * self.prompt_count(spec, fidelity)
        P = int(spec.data["prompt_len"])
        salt = {"check": 1, "proxy": 1, "short": 2, "full": 3, "bench": 4}.get(fidelity, 5)
        generator = torch.Generator().manual_seed(20_000_003 + 97 * spec.seed + salt)
        start = torch.randint(0, len(held) - P, (rows,), generator=generator)
        return torch.from_numpy(held.astype(np.int64))[start.unsqueeze(1) + torch.arange(P)].numpy()

    def references(self, spec: TaskSpec, fidelity: str) -> np.ndarray:
        """int64 [rows, new tokens]: cached greedy decoding of every prompt, computed here on the host."""
        prompts, n = self.prompts(spec, fidelity), self.new_tokens(spec, fidelity)
        key = (str(spec.data["weights_sha256"]), fidelity, len(prompts), n, spec.seed)
        if key not in self._references:
            model = self.model(spec)
            with one_thread():
                self._references[key] = np.stack([decoding.greedy_cached(model, torch.from_numpy(p), n).numpy()
                                                  for p in prompts])
        return self._references[key]

    # --- the harness hooks: lay out the job, then judge what came back ---------------------
    def prepare(self, job: EvalJob, jobdir: Path) -> dict:
        """Write the prompts into the job's inputs; return what the host keeps back (the references)."""
        np.save(jobdir / "inputs" / "prompts.npy", self.prompts(job.task, job.fidelity), allow_pickle=False)
        weights = jobdir / "inputs" / "train_weights.npy"
        return {"references": self.references(job.task, job.fidelity),
                "weights_sha256": decoding.array_digest(np.load(weights, allow_pickle=False))}

    def judge(self, job: EvalJob, result: EvalResult, jobdir: Path, kept: dict, wall: float) -> EvalResult:
        """The result with host-computed match, likelihood and speed-up metrics, or refused with the reason."""
        spec, fidelity = job.task, job.fidelity
        weights = jobdir / "inputs" / "train_weights.npy"
        try:
            unchanged = decoding.array_digest(np.load(weights, allow_pickle=False)) == kept["weights_sha256"]
        except (OSError, ValueError):
            unchanged = False
        if not unchanged:
            return result.model_copy(update={"status": "invalid", "message": (
                "the model's weights file in the job's inputs was changed or removed during the job; a candidate "
                "must never write to its inputs or change the model")})
        if result.status != "ok":
            return result
        references, n_prompts = kept["references"], self.prompt_count(spec, fidelity)
        decoded, problem = _load_decoded(jobdir / "out" / "decoded.npy", references.shape[1])
        if problem is None and (len(decoded) == 0 or len(decoded) % n_prompts or len(decoded) > len(references)):
            problem = (f"decoded.npy has {len(decoded)} rows; expected whole passes of {n_prompts} prompts, at most "
                       f"{len(references)}")
        metrics = dict(result.metrics)
        if problem is None and fidelity not in ("check", "proxy"):
            problem = _timing_problem(metrics, len(decoded) // n_prompts, wall)
        if problem is not None:
            return result.model_copy(update={"status": "invalid", "message": problem})
        metrics.update(self.score(spec, decoded, references[:len(decoded)], self.prompts(spec, fidelity)))
        if fidelity not in ("check", "proxy"):
            metrics.update(speed_metrics(metrics, n_prompts * references.shape[1]))
        return result.model_copy(update={"metrics": metrics})

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray,
              prompts: np.ndarray | None = None) -> dict[str, float]:
        """Exact match of decoded ids against the reference, and the model's log-likelihood of both."""
        same = predictions == targets
        metrics = {"exact_match": float(same.mean()), "sequence_match": float(same.all(axis=1).mean()),
                   "mismatch_rate": float(1.0 - same.mean()), "judged_tokens": float(same.size)}
        if prompts is not None:
            model = self.model(spec)
            rows = range(min(len(predictions), 2 * self.prompt_count(spec, "short")))   # enough for a mean
            with one_thread():
                produced = [decoding.log_likelihood(model, torch.from_numpy(prompts[i]),
                                                    torch.from_numpy(predictions[i])) for i in rows]
                expected = [decoding.log_likelihood(model, torch.from_numpy(prompts[i]), torch.from_numpy(targets[i]))
                            for i in rows]
            tokens = max(1, len(produced)) * predictions.shape[1]
            metrics.update(loglik_per_token=sum(produced) / tokens, reference_loglik_per_token=sum(expected) / tokens)
        return metrics

    # --- the parts of the Task interface a decoding task has no use for --------------------
    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        return torch.from_numpy(self.prompts(spec, "check")[:batch_size])

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        raise NotImplementedError("the decode task trains no candidate: its model is fixed")

    def heldout(self, spec: TaskSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {"prompts": self.prompts(spec, "short")}, self.references(spec, "short")

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError("decode candidates are procedures, run by evaluators.decoding_job")

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (self.prompt_count(spec, "short"), int(spec.data["max_new_tokens"]))

    def check_contract(self, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        raise NotImplementedError("decode candidates are checked by evaluators.decoding_job")

    def contract_text(self, spec: TaskSpec, coder: bool = True) -> str:
        """The candidate contract in words, for the LLM prompts."""
        d = spec.data
        rules = (f"A candidate is a decoding procedure around a fixed trained character-level transformer (bytes as "
                 f"tokens, vocabulary 256, {d['model_n_layers']} blocks, d_model {d['model_d_model']}, "
                 f"{d['model_max_len']} positions). It must produce the model's greedy continuation of each prompt "
                 f"({d['prompt_len']} bytes, {d['max_new_tokens']} new tokens) faster than greedy decoding with a KV "
                 f"cache; output that differs from greedy in more than {d['match_tolerance']:g} of the tokens is "
                 "infeasible. Lossless tricks (caching, drafting with batched verification, self-speculation) keep "
                 "the output; lossy ones (quantisation, early exit) are judged by their match rate.")
        if not coder:
            return rules
        doc = decoding.__doc__ or ""
        interface = doc.split("\n\n")[1] if "\n\n" in doc else ""
        return (f"{rules} The module defines a top-level `generate(model, prompt_ids, max_new_tokens)`: `prompt_ids` is "
                "a 1-D torch.long tensor of byte values; return a 1-D torch.long tensor of exactly max_new_tokens ids "
                "in [0, 256), the continuation only. Never change the model (its weights are hashed before and after: "
                "work on a copy) and keep no outputs between calls. Run under torch.no_grad(). Imports allowed: "
                f"torch, math, typing, dataclasses, functools, itertools, collections, numpy. The model:\n{interface}")


@contextmanager
def one_thread():
    """Torch on one thread for the host's small decodes: they are overhead-bound, and with the cores busy running
    jobs, more threads spin against each other (minutes instead of seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _load_decoded(path: Path, new_tokens: int) -> tuple[np.ndarray, str | None]:
    if not path.is_file():
        return np.zeros((0, new_tokens), np.int64), "the job finished but wrote no decoded ids"
    if path.stat().st_size > DECODED_MAX_BYTES:
        return np.zeros((0, new_tokens), np.int64), f"decoded.npy is {path.stat().st_size} bytes, over the limit"
    try:
        decoded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        return np.zeros((0, new_tokens), np.int64), f"decoded.npy could not be read as a plain array: {exc}"
    if decoded.dtype != np.int64 or decoded.ndim != 2 or decoded.shape[1] != new_tokens:
        return decoded, f"decoded.npy is {decoded.dtype} {decoded.shape}; expected int64 [rows, {new_tokens}]"
    if decoded.size and (decoded.min() < 0 or decoded.max() > 255):
        return decoded, "decoded ids fall outside [0, 256)"
    return decoded, None


def _timing_problem(metrics: dict[str, float], passes: int, wall: float) -> str | None:
    """Why the reported timings cannot be believed, or None."""
    missing = [f"{p}_median" for p in PROCEDURES if f"{p}_median" not in metrics]
    if missing:
        return f"the runner reported no timing for {', '.join(missing)}"
    if int(metrics["candidate_repeats"]) + 1 != passes:
        return (f"the candidate was timed over {int(metrics['candidate_repeats'])} passes plus a warm-up, but "
                f"{passes} passes of ids came back; every timed pass must return its ids")
    claimed = sum(metrics[f"{p}_total"] for p in PROCEDURES)
    if claimed > wall + 1.0:
        return (f"the timings claim {claimed:.1f} s of decoding inside a job the host measured at {wall:.1f} s: "
                "the timer was tampered with; do not patch time functions or the runner")
    if any(metrics[f"{p}_median"] <= 0 for p in PROCEDURES):
        return "a reported median time is not positive: the timer was tampered with"
    return None


def speed_metrics(metrics: dict[str, float], tokens_per_pass: int) -> dict[str, float]:
    """Speed-up against both references (with the interval from the medians' intervals), tokens/s, ms/token."""
    cand, cached, nocache = (metrics[f"{p}_median"] for p in ("candidate", "cached", "nocache"))
    return {"speedup": cached / cand, "speedup_ci_low": metrics["cached_ci_low"] / metrics["candidate_ci_high"],
            "speedup_ci_high": metrics["cached_ci_high"] / metrics["candidate_ci_low"],
            "speedup_nocache": nocache / cand, "cached_over_nocache": nocache / cached,
            "tokens_per_second": tokens_per_pass / cand, "latency_ms_per_token": 1000.0 * cand / tokens_per_pass}
