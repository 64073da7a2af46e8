"""Token-level language modelling on a ladder of scales, scored in bits per byte on held-out text.

What a user picks: the data (`data`), one size knob (`scale`) and how runs are matched
(`budget`). Everything else follows from those.

**Data.** `data="synthetic"` (the default) is English-like text drawn on the host from the
host's secret (`evaluators.tasks.textgen`, the same language as charlm's corpus, 2 MB by
default), byte tokens (vocabulary 256): it needs no download, and no copy of it exists inside
any sandbox (it is kept under the host's home, which no job sees). Every tenth 4 KiB block is
held out (`charlm.split_blocks`). `data=DIR` is a directory written by `archlab prepare-data`
(`archlab.prepare_data`): `train.bin` and `val.bin` (uint16 tokens, nanoGPT's layout),
`token_bytes.npy` (the bytes each token stands for) and `meta.json` (tokenizer, sizes,
sha256 of each file, checked when the spec is made). The whole directory is declared in
`host_only_paths`, so every job runs with it hidden; the training tokens enter a job as one
`.npy` in its inputs (`sandbox_files`, at most `train_tokens` of them), the only form both
sandbox backends can see (the process sandbox hides home directories, docker mounts only the
job directory).

**The ladder** (`rung(scale)`, nanochat-style: depth drives everything): `n_layers = 2 + scale`,
`d_model = 32 * n_layers`, heads of 32 dimensions, `seq_len = 64 * 2**min(scale // 2, 5)`, batch
`16 * 2**(scale // 4)`, a token budget of `tokens_per_param` times the rung's non-embedding
parameter count (12 * n_layers * d_model**2; 2 by default so that the bottom rungs train on a
CPU, 20 is Chinchilla's), the learning rate `3e-3 * sqrt(64 / d_model)` and 10% warm-up. The
spec's `data` carries the rung's `d_model`, `n_layers`, `n_heads`, which a candidate's
`build_model(spec)` reads; the fidelities map to rungs through `Budget.instance`: `short`
trains rung(scale), `full` rung(scale + 1), one scale up. Rung 0's `short` job is about 10-20
CPU-seconds on a 2-core machine.

**Budget.** `budget="tokens"` (compute-matched: every candidate sees the same tokens) is what
the training loop (`evaluators.fidelities.train`) runs. `budget="seconds"` (time-matched, as
autoresearch compares changes) trains each candidate for the rung's wall-clock seconds
(`seconds` option, else the rung's estimate) by the evaluator's clock inside the job, not the
candidate's (the runner's timer is bound before the candidate is imported), with the learning
rate scheduled by elapsed time; this task runs that loop itself (`_train_for_seconds`).

**Scoring** (host side; `prepare`/`judge`, so that a refusal is a status, not a number). The
host draws held-out windows of `seq_len` tokens at places from its secret and, among them,
perturbed twins: a copy of a window whose tokens after a secret position p are replaced by
text from elsewhere. Rows are shuffled, so a candidate cannot tell twins from windows. The
sandbox returns log-probabilities over the whole vocabulary at every scored position
(`[rows, scored, V]` float32, computed by `predict` with `log_softmax`); the host checks they
are normalised (each position's log-sum-exp within `NORM_TOLERANCE` of 0), checks causality
on the scored batch itself (a window and its twin must agree at every position <= p within
`CAUSAL_TOLERANCE` nats, else status `invalid`, rule `causal_on_scored_batch`), and scores
the true next tokens of the windows (not the twins): `heldout_loss` (nats per token) and
`bits_per_byte` = nats / ln 2 over the bytes those tokens stand for (`token_bytes`; tokens of
no bytes, special tokens, are left out of both sums, as nanochat does), comparable across
tokenizers. Size cap: predictions are kept under `PREDICTIONS_CAP` bytes (32 MiB): with a
large vocabulary the host sends fewer windows (at least `MIN_ROWS` rows), and if even those do
not fit, only the last positions of each window are scored (their context is still the whole
window).

What this does not do: train a tokenizer (`archlab prepare-data` does), or catch a model that
peeks only at positions after every twin's p (p is drawn over the scored range, per twin, so
peeking anywhere is caught with a probability that grows with the number of twins; peeking at
the very last positions gains little).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from evaluators import suite
from evaluators.heldout import seed
from evaluators.tasks.base import SandboxOutput, Task, TaskOptions
from evaluators.tasks.lazy import torch
from wire.task import TRAINING, Budget, TaskSpec

SYNTHETIC_BYTES = 2_000_000       # default corpus size
PREDICTIONS_CAP = 32 * 1024 * 1024   # bytes of held-out log-probs a job returns (the harness allows 64 MiB)
MIN_ROWS = 8                      # rows (windows and twins) the host sends whatever the vocabulary
TWIN_EVERY = 8                    # one perturbed twin per this many windows (at least 2)
NORM_TOLERANCE = suite.NORM_TOLERANCE   # one rule for every normalised output: held-out windows and suite rows
CAUSAL_TOLERANCE = 1e-2           # nats a causal model's twin may differ by at positions <= p (TF32, batching)
META = "meta.json"
CAUSALITY_RULE = "causal_on_scored_batch"


class Refused(ValueError):
    """The held-out predictions break a rule of the task (unnormalised, or not causal on the scored batch)."""


def estimate_params(d_model: int, n_layers: int, vocab_size: int = 256) -> int:
    """A transformer's parameters at this width and depth: 12 d^2 per block, plus tied embeddings."""
    return 12 * n_layers * d_model * d_model + vocab_size * d_model


def rung(scale: int, tokens_per_param: float = 2.0) -> dict:
    """The ladder: every size and training setting of rung `scale`, from depth (nanochat's one knob)."""
    n_layers = 2 + scale
    d_model = 32 * n_layers
    seq_len = 64 * 2 ** min(scale // 2, 5)
    batch_size = 16 * 2 ** (scale // 4)
    tokens = int(tokens_per_param * 12 * n_layers * d_model * d_model)
    steps = max(10, math.ceil(tokens / (batch_size * seq_len)))
    return {"scale": scale, "d_model": d_model, "n_layers": n_layers, "n_heads": d_model // 32, "seq_len": seq_len,
            "batch_size": batch_size, "steps": steps, "tokens": steps * batch_size * seq_len,
            "lr": 3e-3 * math.sqrt(64 / d_model), "warmup": max(1, steps // 10),
            "seconds": round(15.0 * 4 ** scale, 1)}


def scored_positions(seq_len: int, vocab_size: int) -> int:
    """The last positions of each window that are scored: all of them unless MIN_ROWS rows would pass the cap."""
    per_position = vocab_size * 4
    if MIN_ROWS * seq_len * per_position <= PREDICTIONS_CAP:
        return seq_len
    return min(seq_len, max(2, PREDICTIONS_CAP // (MIN_ROWS * per_position)))


def layout(heldout_size: int, seq_len: int, vocab_size: int) -> tuple[int, int, int]:
    """(windows, twins, scored positions per row) that keep the predictions under PREDICTIONS_CAP."""
    scored = scored_positions(seq_len, vocab_size)
    rows = max(MIN_ROWS, min(heldout_size + max(2, heldout_size // TWIN_EVERY),
                             PREDICTIONS_CAP // (scored * vocab_size * 4)))
    twins = max(2, rows // (TWIN_EVERY + 1))
    return rows - twins, twins, scored


# --- data -------------------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_meta(directory: Path) -> dict:
    """A prepared directory's meta.json, its files checked against their sha256 (ValueError says what is wrong)."""
    meta_path = directory / META
    if not meta_path.is_file():
        raise ValueError(f"{directory} has no {META}; write it with `archlab prepare-data --text FILE --out "
                         f"{directory}`")
    meta = json.loads(meta_path.read_text())
    for name, expected in meta.get("sha256", {}).items():
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path} is missing; run `archlab prepare-data` again")
        found = file_sha256(path)
        if found != expected:
            raise ValueError(f"{path} hashes to {found[:12]}, not {expected[:12]} as {META} says: it changed since "
                             "it was prepared; run `archlab prepare-data` again")
    return meta


class LMOptions(TaskOptions):
    data: str = Field("synthetic", description="'synthetic' (English-like text drawn from the host's secret, byte "
                                               "tokens) or a directory written by `archlab prepare-data`, hidden "
                                               "from every job")
    scale: int = Field(0, ge=0, le=12, description="the ladder's rung: depth 2 + scale drives width, heads, batch, "
                                                   "tokens and learning rate; short trains this rung, full the next")
    budget: Literal["tokens", "seconds"] = Field("tokens", description="tokens: compute-matched (same tokens for "
                                                 "every candidate); seconds: time-matched (same wall-clock, by the "
                                                 "evaluator's clock in the job)")
    tokens_per_param: float = Field(2.0, gt=0, description="training tokens per non-embedding parameter of a rung "
                                                            "(20 is Chinchilla's; 2 keeps the bottom rungs on a CPU)")
    seconds: float | None = Field(None, gt=0, description="with budget=seconds: wall-clock seconds of a short job "
                                                          "(full gets 4x); default: the rung's estimate")
    short_steps: int | None = Field(None, ge=1, description="training steps of the short fidelity (default: the "
                                                            "rung's)")
    full_steps: int | None = Field(None, ge=1, description="training steps of the full fidelity (default: the next "
                                                           "rung's)")
    heldout_windows: int = Field(64, ge=2, description="held-out windows scored (fewer when the vocabulary is large: "
                                                       "predictions are capped at 32 MiB)")
    corpus_bytes: int = Field(SYNTHETIC_BYTES, ge=50_000, description="bytes of the synthetic corpus")
    suite_items: int = Field(400, ge=0, description="items per scenario of the downstream suite scored at full (and "
                                                  "on an anchor subset at short: `evaluators.suite`); 0: no suite. "
                                                  "Byte tokens only")
    train_tokens: int = Field(8_000_000, ge=1000, description="training tokens written into each job (the start of "
                                                              "train.bin)")


class LM(Task):
    name = "lm"
    summary = "language modelling on a ladder of scales (one knob), bits per byte on held-out text"
    metric = "bits_per_byte"
    higher_is_better = False
    metrics = ("heldout_loss", "suite_score", "suite_accuracy")
    Options = LMOptions
    search_space = "sequence-blocks"
    token_input = True

    def __init__(self):
        # data key -> (training tokens, held-out tokens or None in the sandbox, token_bytes or None)
        self._data_cache: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
        self._suites: dict[tuple, suite.Suite] = {}          # host: (data, secret, size) -> the downstream suite
        self._suite_outputs: dict[str, np.ndarray] = {}      # sandbox: what `predict` computed on the suite's rows

    # --- spec -------------------------------------------------------------------------------------------------
    def baselines(self, spec: TaskSpec) -> dict[str, tuple[dict, str]]:
        """Written by hand in plain PyTorch (`evaluators.baselines.lm_baselines`): a modern transformer, gated linear
        attention in chunks and a Mamba-2 selective SSM; each genome is the block catalogue's nearest, so the
        offline engine changes something close to it."""
        from evaluators.baselines import lm_baselines
        return lm_baselines()

    def spec(self, options: LMOptions) -> TaskSpec:
        if options.data == "synthetic":
            from evaluators.tasks.charlm import synthetic_corpus
            text = synthetic_corpus(options.corpus_bytes)
            data = {"data": "synthetic", "corpus_bytes": options.corpus_bytes, "tokenizer": "byte",
                    "data_sha256": hashlib.sha256(text).hexdigest()}
            vocab = 256
        else:
            directory = Path(options.data).expanduser().resolve()
            meta = read_meta(directory)
            vocab = int(meta["vocab_size"])
            data = {"data": str(directory), "tokenizer": str(meta["tokenizer"]),
                    "data_sha256": hashlib.sha256(json.dumps(meta["sha256"], sort_keys=True).encode()).hexdigest()}
        data["train_tokens"] = options.train_tokens
        data["suite_items"] = options.suite_items if data["tokenizer"] == "byte" else 0
        data["budget"] = options.budget
        low, high = rung(options.scale, options.tokens_per_param), rung(options.scale + 1, options.tokens_per_param)
        data.update({k: low[k] for k in ("scale", "d_model", "n_layers", "n_heads")})
        seconds = options.seconds or low["seconds"]

        def budget(r: dict, steps: int | None, wall: float) -> Budget:
            steps = steps or r["steps"]
            instance = {k: r[k] for k in ("seq_len", "scale", "d_model", "n_layers", "n_heads")}
            if options.budget == "seconds":
                instance["seconds"] = wall
            return Budget(steps=steps, batch_size=r["batch_size"], lr=r["lr"], weight_decay=0.1,
                          warmup_frac=min(1.0, r["warmup"] / steps), instance=instance)

        budgets = {"check": Budget(steps=1, batch_size=4, lr=1e-3),
                   "short": budget(low, options.short_steps, seconds),
                   "full": budget(high, options.full_steps, seconds * 4)}
        max_params = max(2_000_000, 3 * estimate_params(high["d_model"], high["n_layers"], vocab))
        spec = TaskSpec(name=self.name, family="sequence", vocab_size=vocab, seq_len=low["seq_len"], data=data,
                        seed=0, heldout_size=options.heldout_windows, max_params=max_params, budgets=budgets)
        self._data(spec)      # fails now, on the host, when the data cannot be read
        return spec

    def contract_rules(self, spec: TaskSpec) -> str:
        d = spec.data
        return (super().contract_rules(spec) + f" Size the model from spec.data: d_model = {d['d_model']}, n_layers "
                f"= {d['n_layers']}, n_heads = {d['n_heads']} at this rung (the full fidelity builds it one rung up, "
                "with larger values there), so that every candidate is compared at the same scale.")

    # --- data, both sides ---------------------------------------------------------------------------------------
    def _data(self, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        key = str(spec.data["data_sha256"])
        if key in self._data_cache:
            return self._data_cache[key]
        source = str(spec.data["data"])
        if source == "synthetic":
            from evaluators.tasks.charlm import split_blocks, synthetic_corpus
            text = synthetic_corpus(int(spec.data["corpus_bytes"]))
            if hashlib.sha256(text).hexdigest() != key:
                raise ValueError("the synthetic corpus changed since the spec was made (another host secret?); "
                                 "make a new spec")
            train, held = split_blocks(text)
            found = (train.astype(np.uint16), held.astype(np.uint16), np.ones(256, np.int64))
        else:
            directory = Path(source)
            meta = read_meta(directory)
            if hashlib.sha256(json.dumps(meta["sha256"], sort_keys=True).encode()).hexdigest() != key:
                raise ValueError(f"{directory} holds other data than when the spec was made; make a new spec")
            found = (np.memmap(directory / "train.bin", dtype=np.uint16, mode="r"),
                     np.memmap(directory / "val.bin", dtype=np.uint16, mode="r"),
                     np.load(directory / "token_bytes.npy", allow_pickle=False).astype(np.int64))
        self._data_cache[key] = found
        return found

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        train = self._data(spec)[0]
        return {"tokens": np.asarray(train[:int(spec.data["train_tokens"])], dtype=np.uint16)}

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        if "tokens" in files:
            self._data_cache[str(spec.data["data_sha256"])] = (files["tokens"], None, None)

    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        source = str(spec.data["data"])
        return () if source == "synthetic" else (source,)

    def _windows(self, tokens: np.ndarray, length: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` windows of `length` tokens at random places: [n, length] (long)."""
        if len(tokens) <= length:
            raise ValueError(f"{len(tokens)} tokens cannot hold a window of {length}; use more text or a smaller "
                             "scale")
        start = torch.randint(0, len(tokens) - length, (n,), generator=generator).numpy()
        rows = np.stack([np.asarray(tokens[s:s + length]) for s in start])
        return torch.from_numpy(rows.astype(np.int64))

    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        return self._windows(self._data(spec)[0], spec.seq_len, batch_size, torch.Generator().manual_seed(seed))

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        window = self._windows(self._data(spec)[0], spec.seq_len + 1, batch_size, generator)
        return window[:, :-1], window[:, 1:]

    # --- held-out set, host side ----------------------------------------------------------------------------------
    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Inputs {"tokens": [rows, T]} (windows and their twins, shuffled) and targets int64 [rows, T + 2]: the
        true next token at each position, then the row this one is a twin of (-1: a window) and its p."""
        held = self._data(spec)[1]
        if held is None:
            raise RuntimeError("held-out text is not available here (inside the sandbox); heldout() is host side")
        T, V = spec.seq_len, spec.vocab_size
        windows, twins, scored = layout(spec.heldout_size, T, V)
        generator = torch.Generator().manual_seed(seed(secret, self.name, spec.data["data_sha256"], T, windows))
        real = self._windows(held, T + 1, windows, generator)                       # [W, T + 1]
        fillers = self._windows(held, T + 1, twins, generator)                      # text spliced into the twins
        of = torch.randperm(windows, generator=generator)[:twins]
        p = torch.randint(T - scored, T - 1, (twins,), generator=generator)        # p in the scored range, < T - 1
        copies = real[of].clone()
        for i in range(twins):
            copies[i, p[i] + 1:] = fillers[i, p[i] + 1:]
        rows = torch.cat([real, copies])
        partner = torch.cat([torch.full((windows,), -1), of])
        where = torch.cat([torch.full((windows,), -1), p])
        order = torch.randperm(windows + twins, generator=generator)
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))                                 # where each row went
        partner = torch.where(partner >= 0, position[partner.clamp(min=0)], partner)
        rows, partner, where = rows[order], partner[order], where[order]
        targets = torch.cat([rows[:, 1:], partner[:, None], where[:, None]], dim=1)
        return {"tokens": rows[:, :-1].numpy()}, targets.numpy().astype(np.int64)

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        windows, twins, scored = layout(spec.heldout_size, spec.seq_len, spec.vocab_size)
        return (windows + twins, scored, spec.vocab_size)

    # --- sandbox side ----------------------------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Held-out log-probs ([rows, scored, V]); the suite's rows (inputs `suite_c{c}`) are scored too, their last
        c positions kept for `run_in_sandbox` to write."""
        device = next(model.parameters()).device
        if device.type == "cuda":       # full float32 matmuls: a window and its twin must agree to CAUSAL_TOLERANCE
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        tokens = inputs["tokens"]
        logprobs = log_probabilities(model, tokens, device, keep=None)
        self._suite_outputs = {name: log_probabilities(model, rows, device, keep=int(name.removeprefix("suite_c"))).numpy()
                               .astype(np.float32) for name, rows in inputs.items() if name.startswith("suite_c")}
        return logprobs[:, -scored_positions(tokens.shape[1], logprobs.shape[-1]):].numpy().astype(np.float32)

    def run_in_sandbox(self, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path, out_dir: Path,
                       files: dict, device: torch.device, clock) -> SandboxOutput:
        """The model job (`evaluators.model_job.run_model_job`), or the time-matched loop; plus tokens/s."""
        instance = spec.at(fidelity)
        if fidelity in TRAINING and "seconds" in instance.data:
            out = _train_for_seconds(self, spec, fidelity, seed, inputs_dir, device, clock)
        else:
            from evaluators.model_job import run_model_job
            out = run_model_job(self, spec, fidelity, seed, inputs_dir, device)
        for name, outputs in self._suite_outputs.items():       # the downstream suite's outputs, for the host
            np.save(out_dir / f"{name}.npy", outputs, allow_pickle=False)
        seconds, steps = out.metrics.get("train_seconds"), out.metrics.get("steps")
        if seconds and steps:
            out.metrics["tokens_per_second"] = steps * spec.budgets[fidelity].batch_size * instance.seq_len / seconds
        return out

    # --- scoring, host side ------------------------------------------------------------------------------------------
    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """bits_per_byte and heldout_loss from normalised, causal log-probs; `Refused` names the rule broken."""
        logprobs = np.asarray(predictions, dtype=np.float64)                        # [rows, S, V]
        rows, scored, _ = logprobs.shape
        T = targets.shape[1] - 2
        lse = np.logaddexp.reduce(logprobs, axis=-1)
        worst = float(np.abs(lse).max())
        if not worst <= NORM_TOLERANCE:
            raise Refused(f"held-out outputs are not normalised log-probabilities (a position's log-sum-exp is "
                          f"{worst:.3g}, not 0); return log_softmax over the vocabulary (rule: normalised_logprobs)")
        partner, where = targets[:, T], targets[:, T + 1]
        offset = T - scored                                                         # position of scored column 0
        for row in np.flatnonzero(partner >= 0):
            upto = int(where[row]) + 1 - offset                                     # scored columns at positions <= p
            gap = float(np.abs(logprobs[row, :upto] - logprobs[partner[row], :upto]).max()) if upto > 0 else 0.0
            if gap > CAUSAL_TOLERANCE:
                raise Refused(f"the model is not causal on the scored batch: two held-out windows that agree up to "
                              f"a position got outputs {gap:.3g} nats apart before it (rule: {CAUSALITY_RULE}); the "
                              "output at position t may depend only on tokens <= t")
        real = partner < 0
        answers = targets[real, offset:T]                                           # [W, S]
        picked = np.take_along_axis(logprobs[real], answers[..., None], axis=-1)[..., 0]
        token_bytes = self._data(spec)[2]
        weights = token_bytes[answers] if token_bytes is not None else np.ones_like(answers)
        counted = weights > 0
        nats = float(-picked[counted].sum())
        return {"bits_per_byte": nats / math.log(2) / float(weights[counted].sum()),
                "heldout_loss": float(-picked.mean())}

    def prepare(self, job, jobdir: Path, secret: bytes | None = None) -> dict:
        """The held-out rows into the job's inputs (training fidelities); what the host keeps back."""
        from evaluators import heldout
        if job.fidelity not in TRAINING:
            return {}
        instance = job.task.at(job.fidelity)
        heldout.check_rule(self, instance)
        secret = secret or heldout.machine_secret()
        inputs, targets = self.heldout(instance, secret)
        kept: dict = {"targets": targets}
        scored = self.suite_for(job, secret)
        if scored is not None:
            kept["suite"] = scored
            inputs.update(scored[0].inputs())
        for name, array in inputs.items():
            np.save(jobdir / "inputs" / f"heldout_{name}.npy", array, allow_pickle=False)
        return kept

    def judge(self, job, result, jobdir: Path, kept: dict, wall: float):
        """The harness's validation and scoring (`evaluators.grading.score_predictions`), with this task's refusals as
        status `invalid`; tokens/s is the job's own claim and stays a cost, never the score."""
        if "targets" not in kept or result.status != "ok":
            return result
        from evaluators.grading import score_predictions     # host side only: this module runs in the sandbox too
        try:
            result = score_predictions(self, job, result, jobdir / "out" / "predictions.npy", kept["targets"])
            if result.status == "ok" and "suite" in kept:
                result = self._judge_suite(job, result, jobdir / "out", *kept["suite"])
            return result
        except (Refused, suite.SuiteRefused) as exc:
            metrics = {k: v for k, v in result.metrics.items() if k not in (self.metric, *self.metrics)}
            return result.model_copy(update={"status": "invalid", "message": str(exc), "metrics": metrics})

    # --- the downstream suite, host side ---------------------------------------------------------------------------
    def suite_scenarios(self, spec: TaskSpec) -> tuple[tuple[str, ...], np.ndarray] | None:
        """The downstream suite's scenario names and each item's scenario, or None when this spec has no suite."""
        n = int(spec.data.get("suite_items", 0))
        return (suite.SCENARIOS, suite.scenario_labels(n)) if n else None

    def downstream_suite(self, spec: TaskSpec, secret: bytes) -> suite.Suite:
        """The downstream suite of this spec's held-out text and the host's secret (built once per process)."""
        n = int(spec.data.get("suite_items", 0))
        key = (spec.data["data_sha256"], hashlib.sha256(secret).hexdigest(), n)
        if key not in self._suites:
            held = self._data(spec)[1]
            if held is None:
                raise RuntimeError("the suite is built from held-out text, on the host")
            self._suites[key] = suite.build(np.asarray(held, dtype=np.uint8).tobytes(), secret, n)
        return self._suites[key]

    def suite_for(self, job, secret: bytes) -> tuple[suite.Suite, np.ndarray, object] | None:
        """What a training job scores of the suite: the job's item subset with its anchor set
        (`evaluators.item_selection.AnchorSet`: weights and calibration), else the whole suite (and None); None when
        the spec has no suite."""
        if not int(job.task.data.get("suite_items", 0)):
            return None
        whole = self.downstream_suite(job.task, secret)
        if job.items is None:
            return whole, np.arange(len(whole.items)), None
        from evaluators.item_selection import AnchorSet
        part, kept = whole.subset(job.items.items)
        return part, kept, AnchorSet.from_dict(job.items.model_dump())

    def _judge_suite(self, job, result, out: Path, part: suite.Suite, original: np.ndarray, anchors):
        """The suite's metrics and item-level results on the job's result; `SuiteRefused` for bad outputs."""
        from wire.jobs import ItemScores
        outputs = {}
        for c in part.rows.groups():
            path = out / f"suite_c{c}.npy"
            if path.is_file() and path.stat().st_size <= PREDICTIONS_CAP:
                outputs[path.stem] = np.load(path, allow_pickle=False)
        graded = part.grade(outputs, job.task.vocab_size)
        graded = suite.Graded(original[graded.items], graded.scores, graded.correct)
        labels = suite.scenario_labels(int(job.task.data["suite_items"]))
        metrics = {**result.metrics, **suite.scenario_scores(graded, labels, anchors),
                   "suite_forward_tokens": float(part.forward_tokens())}
        record = ItemScores(suite=part.fingerprint, items=graded.items.tolist(),
                            scores=np.round(graded.scores, 5).tolist(), correct=graded.correct.tolist())
        return result.model_copy(update={"metrics": metrics, "items": record})


def log_probabilities(model: torch.nn.Module, tokens: np.ndarray, device: torch.device, keep: int | None) -> torch.Tensor:
    """log_softmax of the model's outputs on `tokens` ([rows, T]), in batches of 16 rows; the last `keep` positions
    of each row, or all of them."""
    rows = torch.from_numpy(np.asarray(tokens)).long()
    outputs = []
    with torch.no_grad():
        for start in range(0, rows.shape[0], 16):
            logits = model(rows[start:start + 16].to(device)).float()           # [b, T, V]
            if keep is not None:
                logits = logits[:, -keep:]
            outputs.append(torch.log_softmax(logits, dim=-1).cpu())
    return torch.cat(outputs)


def _train_for_seconds(task: LM, spec: TaskSpec, fidelity: str, seed: int, inputs_dir: Path,
                       device: torch.device, clock) -> SandboxOutput:
    """budget=seconds: `check`, then AdamW until the evaluator's clock (`clock`, bound by the runner before the
    candidate was imported) has run the rung's seconds, learning rate by elapsed time; then held-out outputs."""
    from evaluators import fidelities
    out = SandboxOutput()
    module = fidelities.load_candidate(inputs_dir / "candidate.py", entry=task.entry)
    out.metrics.update(fidelities.check(task, spec, fidelities.build(module, spec, seed, task.entry), device))
    instance = spec.at(fidelity)
    budget = spec.budgets[fidelity]
    wall = float(instance.data["seconds"])
    model = fidelities.build(module, instance, seed, task.entry).to(device).train()
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": budget.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=budget.lr, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + seed)
    start, step, losses, curve = clock(), 0, [], []
    while (elapsed := clock() - start) < wall:
        progress = elapsed / wall
        lr = budget.lr * (progress / budget.warmup_frac if progress < budget.warmup_frac else
                          0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (progress - budget.warmup_frac)
                                                          / max(1e-9, 1 - budget.warmup_frac))))
        for group in optimizer.param_groups:
            group["lr"] = max(lr, budget.lr * 1e-3)
        x, y = task.train_batch(instance, generator, budget.batch_size)
        loss = task.loss(model(x.to(device)), y.to(device))
        if not torch.isfinite(loss):
            raise fidelities.Diverged(f"training diverged: loss became {loss.item()} at step {step}; lower the "
                                      "learning rate or add normalisation")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if len(losses) == 10:
            curve.append(sum(losses) / len(losses))
            losses = []
    seconds = clock() - start
    model.eval()
    out.curve = curve[::max(1, len(curve) // fidelities.CURVE_POINTS)]
    out.metrics.update({"train_loss": curve[-1] if curve else (losses[-1] if losses else float("nan")),
                        "steps": float(step), "train_seconds": seconds})
    inputs = {p.stem.removeprefix("heldout_"): np.load(p, allow_pickle=False)
              for p in sorted(inputs_dir.glob("heldout_*.npy"))}
    out.predictions = fidelities.heldout_predictions(task, model, inputs)
    return out
