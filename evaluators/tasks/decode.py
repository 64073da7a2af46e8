"""Inference techniques over a fixed trained char-LM: how much faster a decoding procedure produces the same text.

The model is a small character-level transformer (`evaluators.decoding.CharTransformer`,
interface in that module's docstring), trained once per machine on the training split of
the standard library's docstrings (`charlm`'s `corpus=stdlib`) and cached on disk under
`~/.cache/archlab/decode` (key: the recipe's hash; the weights' sha256 is checked on load,
and a missing or mismatched entry is retrained, a few minutes on two cores). The prompts are
`prompt_len`-byte windows of the corpus's held-out split, at places drawn from the host's
secret (`evaluators.heldout`): the text is public, which windows are timed is not.

Candidate contract: a module with a top-level

    generate(model, prompt_ids, max_new_tokens) -> token ids

`prompt_ids` is a 1-D `torch.long` tensor [P] of byte values; the result must be a 1-D
`torch.long` tensor of exactly `max_new_tokens` ids in [0, 256): the continuation only, not
the prompt. `model` must not be changed (its weights are hashed before and after; work on a
copy, e.g. `torch.ao.quantization.quantize_dynamic(model, inplace=False)`). State kept
between calls lives as long as one pass's process: each pass starts a fresh one.

Scoring, in the sandbox (`evaluators.decoding_job`): every pass runs each procedure in a
fresh process that is handed that pass's prompts one at a time, only once its clock runs,
and keeps nothing after it (the candidate's is confined with Landlock, so it can read neither
the job's inputs nor the job directory); the candidate and greedy decoding with a KV cache
(the reference) alternate pass by pass on the same `prompts` prompts, under the same thread
allowance, timed by a process no candidate code runs in; greedy decoding without a cache is
timed on the first passes too. On the host
(`judge`): the ids are compared with the cached-greedy reference the host computed itself (it
never enters the sandbox), giving `exact_match` (per token), `sequence_match` (per prompt) and
`mismatch_rate` (1 - exact_match); the model's log-likelihood of the produced text
(`loglik_per_token`, nats, next to the reference's); and, from the per-pass seconds
(`timings.npy`), the quality metric `speedup`: the median over passes of cached seconds /
candidate seconds, with `speedup_ci_low/high` its paired signed-rank ~95% interval
(`evaluators.decoding.paired_ratio`), `passes`, `speedup_nocache` and `cached_over_nocache` on
the passes the no-cache reference ran, `tokens_per_second` and `latency_ms_per_token`.

A candidate whose `mismatch_rate` is over `match_tolerance` (task option, default 0:
identical output) is "different", not faster: the run's default objective limits
`mismatch_rate` to it, so such a candidate is infeasible and ranks below every feasible one.
The `check` fidelity decodes `check_new_tokens` tokens of two prompts and holds the output to
the contract; `short` and `full` time `prompts` and `full_prompts` prompts per pass, for at
most `max_repeats` passes (at least 8 where there are that many).

Refused with an actionable message (status `invalid`): a wrong length, dtype or range; a
model whose weights changed; a replaced timer (a candidate's process cannot reach the clock
that times it, but replacing `time.perf_counter` and friends is refused all the same);
timings that claim more seconds than the host measured for the whole job, or that are not
positive; a weights file changed on disk. Loops and unbounded allocation end as `timeout`
and `oom` like any other job; a kernel without Landlock refuses timed jobs
(`sandbox_error`).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from evaluators import heldout
from evaluators.tasks.base import SandboxOutput, Task, TaskOptions
from evaluators.tasks.charlm import CORPUS_BYTES, read_corpus, split_blocks
from evaluators.tasks.lazy import module, torch
from wire.jobs import EvalJob, EvalResult
from wire.task import SCREENING, Budget, RunDefaults, TaskSpec

decoding = module("evaluators.decoding")     # torch at module level: imported when the task first needs it

DECODED_MAX_BYTES = 16 * 1024 * 1024
MAX_LEN = 256          # positions of the fixed model
PROCEDURES = ("candidate", "cached", "nocache")     # the rows of the sandbox's timings.npy (evaluators.decoding_job)
MODEL_KEYS = ("d_model", "n_layers", "n_heads", "exit_layer", "max_len", "steps", "batch_size", "train_len", "lr",
              "seed")


class DecodeOptions(TaskOptions):
    corpus: str = Field("stdlib", description="text the fixed model is trained on ('stdlib' docstrings, "
                                               "'synthetic', or a path)")
    corpus_bytes: int = Field(CORPUS_BYTES, ge=1, description="bytes of the corpus used")
    d_model: int = Field(96, ge=8, description="the fixed model's width")
    n_layers: int = Field(4, ge=1, description="the fixed model's blocks")
    exit_layer: int | None = Field(None, ge=1, description="the block an early exit may read (default n_layers // 2)")
    train_steps: int = Field(800, ge=1, description="training steps of the fixed model")
    model_seed: int = Field(0, description="seed of the fixed model's training")
    prompt_len: int = Field(64, ge=1, description="bytes per prompt")
    max_new_tokens: int = Field(128, ge=1, description="tokens decoded per prompt")
    check_new_tokens: int = Field(16, ge=1, description="tokens decoded per prompt at the check fidelity")
    prompts: int = Field(6, ge=1, description="prompts per timed pass at short")
    full_prompts: int = Field(16, ge=1, description="prompts per timed pass at full")
    max_repeats: int = Field(8, ge=1, description="timed passes at most")
    match_tolerance: float = Field(0.0, ge=0, le=1, description="share of tokens that may differ from greedy")
    time_seconds: float = Field(8.0, gt=0, description="seconds of timed passes aimed for")

    @model_validator(mode="after")
    def _room_for_drafts(self) -> "DecodeOptions":
        if self.prompt_len + self.max_new_tokens + 32 > MAX_LEN:
            raise ValueError(f"prompt_len + max_new_tokens = {self.prompt_len + self.max_new_tokens} leaves no room "
                             f"for drafts within the model's {MAX_LEN} positions; shorten them")
        return self


class Decode(Task):
    name = "decode"
    summary = "decoding procedures around a fixed trained char-LM: the same text as greedy, faster"
    metric = "speedup"
    metrics = ("exact_match", "sequence_match", "tokens_per_second")
    costs = ("mismatch_rate",)      # the share of tokens unlike greedy's
    Options = DecodeOptions
    entry = "generate"
    contract = "generate(model, prompt_ids, max_new_tokens) -> torch.long ids"
    candidate_kind = "inference"
    search_space = "decoding-techniques"

    def __init__(self):
        self._weights: dict[str, np.ndarray] = {}       # weights sha256 -> flat weights
        self._models: dict[str, decoding.CharTransformer] = {}
        self._references: dict[tuple, np.ndarray] = {}  # (weights sha, fidelity, rows, tokens, seed, secret) -> ids

    def run_defaults(self, options: DecodeOptions) -> RunDefaults:
        """Output unlike greedy's in more than `match_tolerance` of the tokens is infeasible (`mismatch_rate`
        limit) and the Pareto axis is that rate; no proxy rung (a decoding procedure has no zero-cost proxies);
        one job at a time (timed jobs side by side disturb each other's timings) on one thread (the model is
        small: decoding it is overhead-bound, and spare threads only add noise)."""
        return RunDefaults(limits={"mismatch_rate": options.match_tolerance}, costs=["mismatch_rate"],
                           proxy_rung=False, workers=1, cpus=1.0)

    def spec(self, options: DecodeOptions) -> TaskSpec:
        o = options
        recipe = {"d_model": o.d_model, "n_layers": o.n_layers, "n_heads": 4, "max_len": MAX_LEN, "steps": o.train_steps,
                  "batch_size": 32, "train_len": 64, "lr": 4e-3, "seed": o.model_seed}
        recipe["exit_layer"] = o.exit_layer if o.exit_layer is not None else max(1, recipe["n_layers"] // 2)
        data = {"prompt_len": o.prompt_len, "max_new_tokens": o.max_new_tokens, "check_new_tokens": o.check_new_tokens,
                "max_repeats": o.max_repeats, "match_tolerance": o.match_tolerance, "time_seconds": o.time_seconds}
        prompts = {"check": 2, "short": o.prompts, "full": o.full_prompts}
        corpus, max_bytes = o.corpus, o.corpus_bytes
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
        return int(spec.data["check_new_tokens" if fidelity in SCREENING else "max_new_tokens"])

    def passes(self, spec: TaskSpec, fidelity: str) -> int:
        """Prompt sets a job may decode: one for a check; `max_repeats` timed passes for a timed fidelity (the
        warm-up decodes a fixed public text, never one of these)."""
        return 1 if fidelity in SCREENING else int(spec.data["max_repeats"])

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
    def prompts(self, spec: TaskSpec, fidelity: str, secret: bytes | None = None) -> np.ndarray:
        """int64 [passes x prompts, prompt_len]: windows of the held-out text at places drawn from the host's `secret`
        (default: this machine's, `evaluators.heldout.machine_secret`); fidelities draw apart."""
        sha = str(spec.data["corpus_sha256"])
        held = getattr(self, "_held", {}).get(sha)
        if held is None:
            text = read_corpus(str(spec.data["corpus"]), int(spec.data["corpus_bytes"]))
            held = split_blocks(text)[1]
            self._held = {**getattr(self, "_held", {}), sha: held}
        rows = self.passes(spec, fidelity) * self.prompt_count(spec, fidelity)
        P = int(spec.data["prompt_len"])
        salt = "check" if fidelity in SCREENING else fidelity
        secret = heldout.machine_secret() if secret is None else secret
        generator = torch.Generator().manual_seed(heldout.seed(secret, self.name, sha, spec.seed, salt))
        start = torch.randint(0, len(held) - P, (rows,), generator=generator)
        return torch.from_numpy(held.astype(np.int64))[start.unsqueeze(1) + torch.arange(P)].numpy()

    def references(self, spec: TaskSpec, fidelity: str, secret: bytes | None = None) -> np.ndarray:
        """int64 [rows, new tokens]: cached greedy decoding of every prompt, computed here on the host."""
        secret = heldout.machine_secret() if secret is None else secret
        prompts, n = self.prompts(spec, fidelity, secret), self.new_tokens(spec, fidelity)
        key = (str(spec.data["weights_sha256"]), fidelity, len(prompts), n, spec.seed,
               hashlib.sha256(secret).hexdigest())
        if key not in self._references:
            model = self.model(spec)
            with one_thread():
                self._references[key] = np.stack([decoding.greedy_cached(model, torch.from_numpy(p), n).numpy()
                                                  for p in prompts])
        return self._references[key]

    # --- the harness hooks: lay out the job, then judge what came back ---------------------
    def prepare(self, job: EvalJob, jobdir: Path, secret: bytes | None = None) -> dict:
        """Write the prompts into the job's inputs; return what the host keeps back (the references, the prompts).
        `secret`: the host's (default: this machine's)."""
        prompts = self.prompts(job.task, job.fidelity, secret)
        np.save(jobdir / "inputs" / "prompts.npy", prompts, allow_pickle=False)
        weights = jobdir / "inputs" / "train_weights.npy"
        return {"references": self.references(job.task, job.fidelity, secret), "prompts": prompts,
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
        timings = None
        if problem is None and fidelity not in SCREENING:
            timings, problem = _load_timings(jobdir / "out" / "timings.npy", len(decoded) // n_prompts, wall)
        if problem is not None:
            return result.model_copy(update={"status": "invalid", "message": problem})
        metrics = {k: v for k, v in result.metrics.items() if k in ("decoded_rows", "passes")}   # the rest is ours
        metrics.update(self.score(spec, decoded, references[:len(decoded)], kept["prompts"]))
        if timings is not None:
            metrics.update(speed_metrics(timings, n_prompts * references.shape[1]))
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
        return torch.from_numpy(self.prompts(spec, "check", b"a public example")[:batch_size])

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        raise NotImplementedError("the decode task trains no candidate: its model is fixed")

    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {"prompts": self.prompts(spec, "short", secret)}, self.references(spec, "short", secret)

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError("decode candidates are procedures, run by evaluators.decoding_job")

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (self.prompt_count(spec, "short"), int(spec.data["max_new_tokens"]))

    def check_contract(self, spec: TaskSpec, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        raise NotImplementedError("decode candidates are checked by evaluators.decoding_job")

    def run_in_sandbox(self, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path, out_dir: Path,
                       files: dict, device: torch.device, clock) -> SandboxOutput:
        """A procedure around the task's fixed model (`evaluators.decoding_job`): every pass in its own process,
        so the runner's process never runs the candidate's code; `PassFailure` is what a pass reported."""
        from evaluators import decoding_job
        metrics, environment = decoding_job.run(spec, files.get("weights"), fidelity, inputs_dir, out_dir,
                                                device, clock, threads=torch.get_num_threads())
        return SandboxOutput(metrics=metrics, environment=environment)

    def contract_rules(self, spec: TaskSpec) -> str:
        return self.contract_text(spec, coder=False)

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


def _load_timings(path: Path, passes: int, wall: float) -> tuple[np.ndarray | None, str | None]:
    """The sandbox's per-pass seconds as float64 [3, passes] (rows `PROCEDURES`), or why they cannot be believed."""
    if not path.is_file() or path.stat().st_size > 1_000_000:
        return None, "the job finished without a readable timings.npy (per-pass seconds of every procedure)"
    try:
        timings = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        return None, f"timings.npy could not be read as a plain array: {exc}"
    if timings.dtype != np.float64 or timings.shape != (len(PROCEDURES), passes):
        return None, (f"timings.npy is {timings.dtype} {timings.shape}; expected float64 [{len(PROCEDURES)}, "
                      f"{passes}]: one time per procedure for every pass whose ids came back")
    return timings, _timing_problem(timings, wall)


def _timing_problem(timings: np.ndarray, wall: float) -> str | None:
    """Why per-pass seconds [candidate, cached, nocache] x passes cannot be believed, or None. NaN marks a no-cache
    pass that was not run; the candidate and the cached reference have a time for every pass."""
    timed = timings[~np.isnan(timings)]
    if np.isnan(timings[:2]).any() or not np.isfinite(timed).all():
        return "timings.npy lacks a time for a pass of the candidate or the cached reference"
    if (timed <= 0).any():
        return "a reported pass time is not positive: the timer was tampered with"
    if float(timed.sum()) > wall + 1.0:
        return (f"the timings claim {float(timed.sum()):.1f} s of decoding inside a job the host measured at "
                f"{wall:.1f} s: the timer was tampered with; do not patch time functions or the runner")
    return None


def speed_metrics(timings: np.ndarray, tokens_per_pass: int) -> dict[str, float]:
    """Paired speed-up against the cached reference (median of per-pass ratios, signed-rank interval), against the
    no-cache reference on the passes it ran, seconds per pass, tokens/s and ms/token."""
    candidate, cached, nocache = (timings[i] for i in range(len(PROCEDURES)))
    speedup, low, high = decoding.paired_ratio(list(cached), list(candidate))
    median = float(np.median(candidate))
    metrics = {"speedup": speedup, "speedup_ci_low": low, "speedup_ci_high": high, "passes": float(len(candidate)),
               "candidate_median": median, "cached_median": float(np.median(cached)),
               "tokens_per_second": tokens_per_pass / median, "latency_ms_per_token": 1000.0 * median / tokens_per_pass}
    ran = ~np.isnan(nocache)
    if ran.any():
        metrics.update(speedup_nocache=decoding.paired_ratio(list(nocache[ran]), list(candidate[ran]))[0],
                       cached_over_nocache=decoding.paired_ratio(list(nocache[ran]), list(cached[ran]))[0],
                       nocache_median=float(np.median(nocache[ran])))
    return metrics
