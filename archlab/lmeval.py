"""`archlab lm-eval`: an `lm` candidate as an EleutherAI `lm-eval` model, and the command that benchmarks it.

What this owns:
- `ArchlabLM`, registered in lm-eval's model registry as `archlab` (once this module is imported:
  `simple_evaluate(model="archlab", model_args="candidate=FILE,weights=PT")`; lm-eval 0.4's own
  `lm-eval run` finds no models outside its package): any `torch.nn.Module` mapping
  token ids [B, T] to logits [B, T, V], with the task's tokenizer and context length, answers
  lm-eval's three requests: `loglikelihood` (the continuation's summed log-probability given the
  context, and whether greedy decoding would produce it), `loglikelihood_rolling` (a whole text in
  windows of the context length: lm-eval's own rolling scheme, every token predicted once) and
  `generate_until` (greedy decoding that honours `until` and `max_gen_toks`). Requests are
  batched (longest first, right-padded: the task's contract makes every candidate causal and
  free of mixing across the batch, so padding after a row's end never changes its scores) on
  the model's device. Contexts longer than the context length are cut from the left; a
  continuation longer than it is scored in windows, as the rolling requests are.
- `load_candidate_model`: a candidate file built at a fidelity's rung (`short`, or `full` one
  rung up), held to the task's contract (`evaluators.fidelities.check`), then given weights (a
  saved state dict) or trained here by `evaluators.fidelities.train` at that fidelity's budget.
- The command (`add_arguments`, `main`, `run_cli`): builds or trains the candidate, runs
  `lm_eval.simple_evaluate` on the named tasks, prints lm-eval's results table and writes the
  results as JSON.

Tokenizers: `byte` (the default synthetic data: a string's UTF-8 bytes are its tokens) or the
`tokenizer.json` that `archlab prepare-data` wrote beside the token files. There is no BOS token in
either: an empty context, and the first token of a rolling text, are conditioned on a line break
(or `<|endoftext|>` where the tokenizer has it), as lm-eval conditions them on EOS. As in lm-eval's
HF model, a context's trailing spaces move to the continuation (and are scored with it), and the
continuation's tokens are what encoding context + continuation adds after the context's tokens.

What this does not do:
- Sandbox anything. The candidate's code runs in this process, with this user's rights, on the
  host that holds the data. It is meant for candidates a person has reviewed (a run's best, a
  baseline), not for untrusted code; `archlab run` is the place for those.
- Download: it fetches nothing itself, but lm-eval's standard tasks fetch their datasets from the
  Hugging Face Hub; offline, use tasks over local files (`--include-path`, see
  tests/fixtures/lm_eval_tasks/; `datasets` resolves their relative `data_files` against the
  working directory).
- Sample: decoding is always greedy (`do_sample`, `temperature` are ignored), and there is no
  KV cache (each new token runs the model over the window again; candidates have no cache API).
- Chat templates, multi-GPU, or scoring inside the loop (a run's candidates are scored by the task).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import torch

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ModuleNotFoundError as exc:            # the CLI shows this message as it is
    raise ModuleNotFoundError("`archlab lm-eval` needs EleutherAI's lm-eval: pip install -e .[lmeval]",
                              name=exc.name) from exc

from wire.task import TRAINING, TaskSpec

BATCH_TOKENS = 8192            # default batch: this many tokens of windows per forward pass (rows = this // seq_len)
DEFAULT_MAX_GEN_TOKS = 256    # tokens generated when a task does not say (lm-eval's own default)
PAD = 0                       # right padding: never read back (causal models), so any id does


class AdapterError(ValueError):
    """The candidate, its weights, the data's tokenizer or the options cannot be used; the message says what to do."""


# --- tokenizers ---------------------------------------------------------------------------------------------------
class Codec(Protocol):
    """Text to the task's token ids and back."""

    vocab_size: int
    prefix_token: int           # what an empty context is (there is no BOS)
    stop_token: int | None      # generation ends here (end of text), where the tokenizer has one

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteCodec:
    """The `byte` tokenizer: a string's UTF-8 bytes are its tokens (vocabulary 256)."""

    vocab_size = 256
    prefix_token = ord("\n")
    stop_token = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")     # a cut multi-byte character shows as U+FFFD


class TokenizerCodec:
    """A `tokenizers` tokenizer (the `tokenizer.json` that `archlab prepare-data` writes for BPE or a file)."""

    END_OF_TEXT = "<|endoftext|>"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.stop_token = tokenizer.token_to_id(self.END_OF_TEXT)
        newline = self.encode("\n")
        self.prefix_token = self.stop_token if self.stop_token is not None else (newline[0] if newline else 0)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def codec_for(spec: TaskSpec) -> Codec:
    """The tokenizer the `lm` task's data was written with; AdapterError when this host cannot load it."""
    name = str(spec.data.get("tokenizer", "byte"))
    if name == "byte":
        return ByteCodec()
    path = Path(str(spec.data.get("data", ""))) / "tokenizer.json"
    if not path.is_file():
        raise AdapterError(f"the data was tokenised with {name!r} but {path} is missing; run `archlab prepare-data` "
                           "again for that text, or pass the directory that holds its tokenizer.json with --data")
    from tokenizers import Tokenizer
    try:
        return TokenizerCodec(Tokenizer.from_file(str(path)))
    except Exception as exc:                 # noqa: BLE001 - the library's message says what is wrong with the file
        raise AdapterError(f"{path} cannot be loaded by this host's tokenizers library: {exc}") from None


# --- scoring windows ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """One forward pass's worth of a request: the model reads `tokens`; its last len(targets) positions predict
    `targets`."""

    request: int
    tokens: list[int]
    targets: list[int]


def windows(whole: list[int], first: int, seq_len: int, request: int) -> Iterator[Window]:
    """Windows that score whole[first:], seq_len targets at most each, each with as much context as fits.

    With `first` = 1 after a prefix token these are lm-eval's rolling windows (`get_rolling_token_windows` with
    context_len=1, made disjoint): every token predicted once, the last window full-sized."""
    for start in range(first, len(whole), seq_len):
        end = min(start + seq_len, len(whole))
        yield Window(request, whole[max(0, end - 1 - seq_len):end - 1], whole[start:end])


def split_pair(codec: Codec, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's HF model splits them: trailing spaces of the context move to the
    continuation, and the continuation is what encoding the whole adds after the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        return [codec.prefix_token], codec.encode(continuation)
    whole = codec.encode(context + continuation)
    context_ids = codec.encode(context)
    return context_ids, whole[len(context_ids):]


# --- the lm-eval model --------------------------------------------------------------------------------------------
@register_model("archlab")
class ArchlabLM(LM):
    """An archlab `lm` candidate (any module: ids [B, T] -> logits [B, T, V]) as an lm-eval model."""

    def __init__(self, model: torch.nn.Module, codec: Codec, seq_len: int, batch_size: int | None = None,
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, info: dict | None = None):
        super().__init__()
        if seq_len < 1:
            raise AdapterError(f"seq_len must be at least 1, not {seq_len}")
        self.model = model.eval()
        self.codec, self.seq_len = codec, seq_len
        self.batch_size = max(1, int(batch_size or BATCH_TOKENS // seq_len))
        self.max_gen_toks = int(max_gen_toks)
        self.info = dict(info or {})
        first = next(model.parameters(), None)
        self._device = first.device if first is not None else torch.device("cpu")

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "ArchlabLM":
        """`simple_evaluate(model="archlab", model_args={"candidate": FILE, "weights": PT, ...})`: the keys are
        `load_candidate_model`'s (candidate, weights, fidelity, scale, data, seed, device) plus batch_size."""
        args = {**{k: v for k, v in (additional_config or {}).items() if v is not None}, **arg_dict}
        if "candidate" not in args:
            raise AdapterError("model_args needs candidate=PATH (and weights=STATE_DICT.pt)")
        loaded = load_candidate_model(Path(str(args["candidate"])),
                                      weights=Path(str(args["weights"])) if args.get("weights") else None,
                                      fidelity=str(args.get("fidelity", "short")), scale=int(args.get("scale", 0)),
                                      data=str(args.get("data", "synthetic")), seed=int(args.get("seed", 0)),
                                      device=str(args.get("device") or default_device()))
        batch = args.get("batch_size")              # lm-eval may pass "auto": the token-sized default then
        return cls(loaded.model, loaded.codec, loaded.seq_len,
                   batch_size=int(batch) if str(batch or "").isdigit() else None, info=loaded.info)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "ArchlabLM":
        from lm_eval.utils import simple_parse_args_string
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @property
    def device(self) -> torch.device:
        return self._device

    def get_model_info(self) -> dict:
        """What lm-eval writes into its results' `config`: the candidate, its rung and its training."""
        return {"archlab": self.info, "seq_len": self.seq_len}

    # --- scoring ---
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        pairs = [split_pair(self.codec, *req.args) for req in requests]
        found = self._score_requests([(ctx + cont, len(ctx)) for ctx, cont in pairs])
        for req, result in zip(requests, found):
            self.cache_hook.add_partial("loglikelihood", req.args, result)
        return found

    def loglikelihood_rolling(self, requests) -> list[float]:
        texts = [[self.codec.prefix_token] + self.codec.encode(req.args[0]) for req in requests]
        found = [logprob for logprob, _ in self._score_requests([(tokens, 1) for tokens in texts])]
        for req, result in zip(requests, found):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, result)
        return found

    def _score_requests(self, scored: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """For each (tokens, first scored index): the summed log-probability of tokens[first:] and whether each of
        them is the model's argmax."""
        totals = [0.0] * len(scored)
        greedy = [True] * len(scored)
        every = [w for i, (tokens, first) in enumerate(scored) for w in windows(tokens, first, self.seq_len, i)]
        for window, logprob, is_greedy in self._score_windows(every):
            totals[window.request] += logprob
            greedy[window.request] = greedy[window.request] and is_greedy
        return list(zip(totals, greedy))

    @torch.inference_mode()
    def _score_windows(self, every: list[Window]) -> Iterator[tuple[Window, float, bool]]:
        order = sorted(every, key=lambda w: -len(w.tokens))          # similar lengths share a batch: less padding
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            logits = self._forward([w.tokens for w in batch])                                     # [B, T, V]
            for row, window in enumerate(batch):
                end = len(window.tokens)       # log_softmax of the scored positions only: no second [B, T, V]
                picked = torch.log_softmax(logits[row, end - len(window.targets):end].float(), dim=-1)   # [k, V]
                targets = torch.tensor(window.targets, device=picked.device)
                logprob = picked.gather(-1, targets[:, None]).sum().item()
                yield window, logprob, bool((picked.argmax(-1) == targets).all().item())

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits [B, T, V] of right-padded rows (T = the longest row)."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        logits = self.model(ids.to(self._device))
        if logits.shape[:2] != ids.shape or logits.shape[-1] < self.codec.vocab_size:
            raise AdapterError(f"the model returned logits of shape {tuple(logits.shape)} for ids {tuple(ids.shape)}; "
                               f"the contract is [B, T, V] with V >= {self.codec.vocab_size} (the tokenizer's)")
        return logits

    # --- generation ---
    def generate_until(self, requests) -> list[str]:
        jobs = [_Generation.of(req.args, self) for req in requests]
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].tokens))
        for start in range(0, len(order), self.batch_size):
            self._generate([jobs[i] for i in order[start:start + self.batch_size]])
        for req, job in zip(requests, jobs):
            self.cache_hook.add_partial("generate_until", req.args, job.text)
        return [job.text for job in jobs]

    @torch.inference_mode()
    def _generate(self, batch: list["_Generation"]) -> None:
        """Greedy decoding of a batch, a token per step for every row still running, until each stops."""
        running = [job for job in batch if not job.done]
        while running:
            logits = self._forward([job.tokens[-self.seq_len:] for job in running])
            for row, job in enumerate(running):
                last = min(len(job.tokens), self.seq_len) - 1
                job.add(int(logits[row, last, :self.codec.vocab_size].argmax()), self.codec)
            running = [job for job in running if not job.done]


@dataclass
class _Generation:
    """One generate_until request as it runs: its tokens so far, its stop strings, the text produced."""

    tokens: list[int]
    until: list[str]
    budget: int
    generated: list[int] = field(default_factory=list)
    text: str = ""
    done: bool = False

    @classmethod
    def of(cls, args: tuple, lm: ArchlabLM) -> "_Generation":
        context, kwargs = args[0], dict(args[1] or {})
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        tokens = lm.codec.encode(context) or [lm.codec.prefix_token]
        budget = int(kwargs.get("max_gen_toks", lm.max_gen_toks))
        return cls(tokens=tokens, until=[u for u in until if u], budget=budget, done=budget <= 0)

    def add(self, token: int, codec: Codec) -> None:
        """Take the model's next token; stop at end of text, at the first stop string (cut off), or at the budget."""
        if token == codec.stop_token:
            self.done = True
            return
        self.tokens.append(token)
        self.generated.append(token)
        self.text = codec.decode(self.generated)
        cuts = [self.text.find(stop) for stop in self.until if stop in self.text]
        if cuts:
            self.text, self.done = self.text[:min(cuts)], True
        elif len(self.generated) >= self.budget:
            self.done = True


# --- a candidate, built and given weights -------------------------------------------------------------------------
@dataclass
class LoadedCandidate:
    """A candidate ready to score: the model on its device, the data's tokenizer, its context length, and what to
    record about it (file, rung, weights or training)."""

    model: torch.nn.Module
    codec: Codec
    seq_len: int
    info: dict


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_candidate_model(candidate: Path, *, weights: Path | None = None, train: bool = False,
                         fidelity: str = "short", scale: int = 0, data: str = "synthetic", steps: int | None = None,
                         seed: int = 0, device: str = "cpu", save_weights: Path | None = None) -> LoadedCandidate:
    """Build `candidate` at `fidelity`'s rung of the `lm` task (`scale`, `data`), check it against the task's
    contract, then load `weights` or (with `train`) train it at that fidelity's budget (`steps` overrides it)."""
    from evaluators import fidelities
    from evaluators.contracts import ContractViolation
    from evaluators.tasks import get_task

    if fidelity not in TRAINING:
        raise AdapterError(f"fidelity {fidelity!r}: use short (the scale's rung) or full (one rung up)")
    if (weights is None) == (not train):
        raise AdapterError("give either weights (a saved state dict) or train (train it here), not both or neither")
    if not candidate.is_file():
        raise AdapterError(f"{candidate} is not a file; give the candidate's Python module")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AdapterError("--device cuda but this torch sees no GPU; use --device cpu")
    task = get_task("lm")
    try:
        spec = task.spec(task.options(scale=scale, data=data, **({f"{fidelity}_steps": steps} if steps else {})))
    except ValueError as exc:                # pydantic's and the task's own: both say what is wrong
        raise AdapterError(f"the lm task refuses these options: {exc}") from None
    instance = spec.at(fidelity)
    codec = codec_for(spec)
    target = torch.device(device)
    try:
        module = fidelities.load_candidate(candidate, entry=task.entry)
        model = fidelities.build(module, instance, seed, task.entry)
        fidelities.check(task, instance, model, target)
    except ContractViolation as exc:
        raise AdapterError(f"{candidate} breaks the lm task's contract: {exc}") from None
    info = {"candidate": str(candidate), "candidate_sha256": hashlib.sha256(candidate.read_bytes()).hexdigest(),
            "fidelity": fidelity, "scale": scale, "data": str(spec.data["data"]),
            "tokenizer": str(spec.data["tokenizer"]), "seq_len": instance.seq_len, "seed": seed,
            "params": fidelities.count_params(model)}
    if weights is not None:
        _load_weights(model, weights, target, fidelity, scale)
        info["weights"] = str(weights)
    else:
        try:
            trained = fidelities.train(task, instance, model, spec.budgets[fidelity], seed, target)
        except fidelities.Diverged as exc:
            raise AdapterError(str(exc)) from None
        info["trained"] = {k: v for k, v in trained.items() if k != "curve"}
        if save_weights is not None:
            save_weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), save_weights)
            info["weights"] = str(save_weights)
    return LoadedCandidate(model.to(target).eval(), codec, instance.seq_len, info)


def _load_weights(model: torch.nn.Module, path: Path, device: torch.device, fidelity: str, scale: int) -> None:
    if not path.is_file():
        raise AdapterError(f"{path} is not a file; give a state dict saved with torch.save (--save-weights writes one)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AdapterError(f"{path} does not fit the model built at --fidelity {fidelity} --scale {scale}: "
                           f"{str(exc).splitlines()[0]}; were the weights trained at another rung, scale or "
                           "candidate?") from None
    model.to(device)


# --- the command --------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Benchmark an lm candidate with EleutherAI's lm-eval harness: build it at a fidelity's rung, "
                          "load its weights or train it here, run lm_eval.simple_evaluate on --tasks, print the "
                          "table and write the results as JSON. The candidate's code runs in this process, NOT in a "
                          "sandbox: use it on candidates a person has reviewed. lm-eval's standard tasks download "
                          "their datasets from the Hugging Face Hub; offline, pass local task YAMLs with "
                          "--include-path.")
    parser.add_argument("--candidate", type=Path, required=True, help="the candidate's Python file (build_model)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--weights", type=Path, help="a state dict saved with torch.save (e.g. by --save-weights)")
    how.add_argument("--train", choices=TRAINING, help="train here at this fidelity's budget first")
    parser.add_argument("--fidelity", choices=TRAINING, default="short",
                        help="with --weights: the rung the weights belong to (short: --scale's, full: one up)")
    parser.add_argument("--scale", type=int, default=0, help="the lm task's ladder rung (task option scale)")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a directory from `archlab prepare-data`")
    parser.add_argument("--steps", type=int, default=None, help="with --train: training steps instead of the budget's")
    parser.add_argument("--save-weights", type=Path, default=None, help="with --train: write the trained state dict")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task names (or groups)")
    parser.add_argument("--include-path", type=Path, default=None, help="a directory of extra task YAMLs")
    parser.add_argument("--no-default-tasks", action="store_true", help="only the tasks under --include-path (skips "
                        "indexing lm-eval's thousands of shipped task YAMLs: a few seconds)")
    parser.add_argument("--limit", type=float, default=None, help="examples per task (below 1: a fraction)")
    parser.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"windows per forward pass (default: "
                        f"{BATCH_TOKENS} tokens' worth, {BATCH_TOKENS} // the rung's seq_len; lower it on "
                        "out-of-memory)")
    parser.add_argument("--log-samples", action="store_true", help="keep every item's requests, answers and "
                        "scores in the results JSON (under 'samples')")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's init and training")
    parser.add_argument("--out", type=Path, default=None, help="where the results JSON goes")


def main(args: argparse.Namespace) -> int:
    """Run the command; 0 on success, 2 (after saying what to do) when the candidate or options cannot be used."""
    if args.save_weights is not None and args.train is None:
        return _fail("--save-weights needs --train", "add --train short (or full), or drop --save-weights")
    try:
        loaded = load_candidate_model(args.candidate, weights=args.weights, train=args.train is not None,
                                      fidelity=args.train or args.fidelity, scale=args.scale, data=args.data,
                                      steps=args.steps, seed=args.seed, device=args.device or default_device(),
                                      save_weights=args.save_weights)
        results = evaluate(ArchlabLM(loaded.model, loaded.codec, loaded.seq_len, batch_size=args.batch_size,
                                     info=loaded.info),
                           [t for t in args.tasks.split(",") if t], include_path=args.include_path,
                           limit=_limit(args.limit), num_fewshot=args.num_fewshot,
                           include_defaults=not args.no_default_tasks, log_samples=args.log_samples)
    except AdapterError as exc:
        return _fail(str(exc), "`archlab lm-eval --help` lists the options")
    from lm_eval.utils import make_table
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    if "weights" in loaded.info and args.save_weights is not None:
        print(f"weights saved to {args.save_weights}")
    if args.out is not None:
        write_results(results, args.out)
        print(f"results written to {args.out}")
    return 0


def evaluate(lm: ArchlabLM, tasks: list[str], include_path: Path | None = None, limit: int | float | None = None,
             num_fewshot: int | None = None, include_defaults: bool = True, log_samples: bool = False) -> dict:
    """lm-eval's `simple_evaluate` on `tasks` (the shipped ones unless include_defaults is False, and those under
    include_path); the results dict, with every item's record under "samples" when `log_samples`."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    if include_path is not None and not include_path.is_dir():
        raise AdapterError(f"--include-path {include_path} is not a directory")
    manager = TaskManager(include_path=str(include_path) if include_path else None, include_defaults=include_defaults)
    unknown = [t for t in tasks if t not in manager.all_tasks and not manager.match_tasks([t])
               and not Path(t).is_file()]
    if unknown or not tasks:
        where = f"under {include_path}" + ("" if include_defaults else " (--no-default-tasks)") if include_path \
            else "among lm-eval's tasks"
        raise AdapterError(f"no task named {', '.join(unknown) or '(none given)'} {where}; `lm-eval ls tasks` lists "
                           "lm-eval's own, and --include-path adds a directory of your YAMLs")
    results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                              batch_size=lm.batch_size, device=str(lm.device), log_samples=log_samples)
    return dict(results)


def write_results(results: dict, path: Path) -> None:
    from lm_eval.utils import handle_non_serializable
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=handle_non_serializable) + "\n")


def _limit(value: float | None) -> int | float | None:
    """lm-eval reads an int as a count and a float below 1 as a fraction."""
    return int(value) if value is not None and value >= 1 else value


def _fail(message: str, hint: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(f"next: {hint}", file=sys.stderr)
    return 2


def run_cli(argv: Sequence[str]) -> int:
    """`archlab lm-eval ARGS` (and `python -m archlab.lmeval ARGS`): parse, then `main`."""
    parser = argparse.ArgumentParser(prog="archlab lm-eval")
    add_arguments(parser)
    return main(parser.parse_args(list(argv)))


if __name__ == "__main__":
    sys.exit(run_cli(sys.argv[1:]))
