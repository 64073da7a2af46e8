"""Character-level language modelling on a corpus the sandbox cannot read, or on a file the user names.

The default corpus (`corpus=synthetic`) is English-like text drawn on the host from the
host's secret (`evaluators.tasks.textgen`): real words of the standard library's docstrings
in a secret class-bigram language, 0.8 MB (`corpus_bytes`). It is made once per machine
and kept in the host's secret directory (`evaluators.heldout.secrets_dir`, under the home
directory no job can see), next to the key it comes from. Why not the docstrings
themselves, as before: the standard library is readable inside every sandbox, so a
candidate rebuilt the corpus and looked up each held-out continuation (0.99 accuracy with
256 parameters); `corpus=stdlib` is refused for that reason. Task option `corpus=PATH` uses
any text file instead; the task declares it in `host_only_paths`, so every job runs with the
file hidden. Either way the corpus's sha256 goes into `spec.data["corpus_sha256"]`, and a
corpus that no longer matches it is refused rather than silently trained on.

Tokens are bytes (vocabulary 256), so any file works and nothing needs a tokenizer.

The corpus is split in 4 KiB blocks; every tenth block is held out. Only the training
blocks are written into a job (`sandbox_files`); the host cuts held-out windows of `seq_len`
bytes at places drawn from its secret and keeps the byte that follows each window. The
sandbox returns the logits at the last position of each window: `[heldout_size, positions,
256]` (256 x 8 windows by default, 2 MB), and the host scores next-byte `accuracy` (the
quality metric, higher is better), `heldout_loss` (nats) and `bits_per_char`. The byte to
predict is never in the window, so a model that looks ahead when scored gains nothing.

What this does not hide: a user's corpus that also exists elsewhere on a disk the process
sandbox can read (a copy in the project, say); the docker backend sees only what it mounts.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from evaluators.heldout import machine_secret, secrets_dir, seed
from evaluators.tasks import textgen
from evaluators.tasks.base import Task, TaskOptions
from evaluators.tasks.lazy import torch
from wire.task import Budget, TaskSpec

CORPUS_BYTES = 800_000   # default corpus size: enough text for a small char-LM, minutes to train on
BLOCK = 4096             # held-out split granularity in bytes
HELDOUT_EVERY = 10       # every tenth block is held out
EXTRACTOR_VERSION = 1    # bump when the extraction changes, so caches are rebuilt
SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "lib2to3",
             "turtledemo", "ensurepip", "venv"}


def _stdlib_text(max_bytes: int) -> bytes:
    """Docstrings of the standard library, in a fixed order, cut at `max_bytes`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[bytes] = []
    size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(f for f in filenames if f.endswith(".py")):
            source = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(source)
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        parts.append(doc.encode("utf-8") + b"\n\n")
                        size += len(parts[-1])
            if size >= max_bytes:
                return b"".join(parts)[:max_bytes]
    return b"".join(parts)[:max_bytes]


def _cache_dir() -> Path:
    for base in (Path.home() / ".cache" / "archlab" / "charlm", Path(tempfile.gettempdir()) / "archlab-charlm"):
        try:
            base.mkdir(parents=True, exist_ok=True)
            if os.access(base, os.W_OK):
                return base
        except OSError:
            continue
    raise OSError("no writable cache directory for the charlm corpus (tried ~/.cache/archlab and the temp dir)")


def stdlib_corpus(max_bytes: int = CORPUS_BYTES) -> bytes:
    """The default corpus, from the disk cache when this recipe was extracted before."""
    recipe = {"v": EXTRACTOR_VERSION, "stdlib": sysconfig.get_paths()["stdlib"], "python": sys.version,
              "max_bytes": max_bytes}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    try:
        path = _cache_dir() / f"stdlib-{key}.txt"
    except OSError:
        return _stdlib_text(max_bytes)
    if path.is_file():
        return path.read_bytes()
    text = _stdlib_text(max_bytes)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(text)
    os.replace(tmp, path)
    return text


def synthetic_corpus(max_bytes: int = CORPUS_BYTES) -> bytes:
    """The default charlm corpus (`evaluators.tasks.textgen`), cached beside the host's secret (host side only)."""
    words = textgen.vocabulary(stdlib_corpus(CORPUS_BYTES))
    recipe = {"v": textgen.TEXTGEN_VERSION, "max_bytes": max_bytes, "words": words}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    secret = machine_secret()
    path = secrets_dir() / f"charlm-{key}-{seed(secret, 'cache-name') % 10**8:08d}.txt"
    if path.is_file():
        return path.read_bytes()
    text = textgen.generate(secret, words, max_bytes)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(text)
    os.replace(tmp, path)
    return text


def read_corpus(source: str, max_bytes: int = CORPUS_BYTES) -> bytes:
    """The corpus named by `source`: "synthetic" (charlm's default), "stdlib" (the docstrings, which the decode
    task's fixed model learns from) or a path to a text file."""
    if source == "synthetic":
        return synthetic_corpus(max_bytes)
    if source == "stdlib":
        return stdlib_corpus(max_bytes)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"corpus {source!r} is not a readable file; name a text file or use the default corpus")
    return path.read_bytes()


def split_blocks(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(training bytes, held-out bytes): every `HELDOUT_EVERY`-th block of `BLOCK` bytes is held out."""
    array = np.frombuffer(data, dtype=np.uint8)
    blocks = [array[i:i + BLOCK] for i in range(0, len(array), BLOCK)]
    held = [b for i, b in enumerate(blocks) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    train = [b for i, b in enumerate(blocks) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    return np.concatenate(train), np.concatenate(held) if held else np.zeros(0, np.uint8)


class CharLMOptions(TaskOptions):
    corpus: str = Field("synthetic", description="'synthetic' (drawn from the host's secret) or a path to a text "
                                                  "file, hidden from every job")
    corpus_bytes: int = Field(CORPUS_BYTES, ge=1, description="bytes of the corpus used")
    seq_len: int = Field(128, ge=2, description="window length in bytes")
    positions: int = Field(8, ge=1, description="held-out windows per held-out example")
    heldout_size: int = Field(256, ge=1, description="held-out examples")
    short_steps: int = Field(200, ge=1, description="training steps at the short fidelity")
    full_steps: int = Field(2000, ge=1, description="training steps at the full fidelity")

    @field_validator("corpus")
    @classmethod
    def _not_readable_in_the_sandbox(cls, corpus: str) -> str:
        if corpus == "stdlib":
            raise ValueError("charlm cannot hold out the standard library's docstrings: every sandbox can read the "
                             "standard library, so a candidate could look the held-out text up; use the default "
                             "corpus (synthetic) or corpus=PATH to a text file of yours")
        return corpus


class CharLM(Task):
    name = "charlm"
    summary = "next-byte prediction on English-like text the sandbox cannot read, or on your own text file"
    metric = "accuracy"
    metrics = ("heldout_loss", "bits_per_char")
    lower_is_better = ("heldout_loss", "bits_per_char")
    Options = CharLMOptions
    search_space = "sequence-blocks"
    token_input = True

    def __init__(self):
        self._splits: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # corpus sha256 -> (train, held-out)

    def spec(self, options: CharLMOptions) -> TaskSpec:
        corpus = options.corpus
        if corpus != "synthetic":
            corpus = str(Path(corpus).expanduser().resolve())   # the path the sandbox hides
        max_bytes, seq_len = options.corpus_bytes, options.seq_len
        budgets = {
            "check": Budget(steps=1, batch_size=4, lr=1e-3),
            "short": Budget(steps=options.short_steps, batch_size=32, lr=3e-3),
            "full": Budget(steps=options.full_steps, batch_size=32, lr=3e-3),
        }
        data = read_corpus(corpus, max_bytes)
        sha = hashlib.sha256(data).hexdigest()
        train, held = split_blocks(data)
        if len(held) < seq_len + 2 or len(train) < seq_len + 2:
            raise ValueError(f"charlm corpus {corpus!r} has {len(data)} bytes; it needs at least "
                             f"{HELDOUT_EVERY * BLOCK} so that held-out windows of seq_len={seq_len} fit")
        self._splits[sha] = (train, held)
        return TaskSpec(name=self.name, family="sequence", vocab_size=256, seq_len=seq_len,
                        data={"corpus": corpus, "corpus_bytes": max_bytes, "corpus_sha256": sha,
                              "corpus_size": len(data), "positions": options.positions},
                        seed=0, heldout_size=options.heldout_size, budgets=budgets)

    def _data(self, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray | None]:
        sha = str(spec.data["corpus_sha256"])
        if sha not in self._splits:
            data = read_corpus(str(spec.data["corpus"]), int(spec.data["corpus_bytes"]))
            found = hashlib.sha256(data).hexdigest()
            if found != sha:
                raise ValueError(f"the charlm corpus {spec.data['corpus']!r} now hashes to {found[:12]}, not the "
                                 f"spec's {sha[:12]}: it changed since the spec was made; make a new spec")
            self._splits[sha] = split_blocks(data)
        return self._splits[sha]

    def sandbox_files(self, spec: TaskSpec) -> dict[str, np.ndarray]:
        return {"corpus": self._data(spec)[0]}

    def attach(self, spec: TaskSpec, files: dict[str, np.ndarray]) -> None:
        if "corpus" in files:
            self._splits[str(spec.data["corpus_sha256"])] = (files["corpus"].astype(np.uint8), None)

    def _windows(self, data: np.ndarray, spec: TaskSpec, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` random windows of seq_len + 1 bytes: [n, T + 1]."""
        start = torch.randint(0, len(data) - spec.seq_len - 1, (n,), generator=generator)
        index = start.unsqueeze(1) + torch.arange(spec.seq_len + 1)
        return torch.from_numpy(data)[index].long()

    def example_input(self, spec: TaskSpec, batch_size: int, seed: int) -> torch.Tensor:
        return self._windows(self._data(spec)[0], spec, batch_size, torch.Generator().manual_seed(seed))[:, :-1]

    def train_batch(self, spec: TaskSpec, generator: torch.Generator, batch_size: int):
        window = self._windows(self._data(spec)[0], spec, batch_size, generator)
        return window[:, :-1], window[:, 1:]

    def host_only_paths(self, spec: TaskSpec) -> tuple[str, ...]:
        corpus = str(spec.data["corpus"])
        return () if corpus == "synthetic" else (corpus,)

    def heldout(self, spec: TaskSpec, secret: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        held = self._data(spec)[1]
        if held is None:
            raise RuntimeError("held-out text is not available here (inside the sandbox); heldout() is host side")
        N, P = spec.heldout_size, int(spec.data["positions"])
        where = torch.Generator().manual_seed(seed(secret, self.name, spec.data["corpus_sha256"], spec.seq_len))
        window = self._windows(held, spec, N * P, where)
        tokens = window[:, :-1].reshape(N, P, spec.seq_len)
        return {"tokens": tokens.numpy()}, window[:, -1].reshape(N, P).numpy()

    def predict(self, model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tokens = torch.from_numpy(inputs["tokens"]).long()                # [N, P, T]
        N, P, T = tokens.shape
        flat = tokens.reshape(N * P, T)
        device = next(model.parameters()).device
        outputs = []
        with torch.no_grad():
            for start in range(0, flat.shape[0], 64):
                logits = model(flat[start:start + 64].to(device))          # [b, T, V]
                outputs.append(logits[:, -1].float().cpu())
        return torch.cat(outputs).reshape(N, P, -1).numpy().astype(np.float32)

    def expected_prediction_shape(self, spec: TaskSpec) -> tuple[int, ...]:
        return (spec.heldout_size, int(spec.data["positions"]), spec.vocab_size)

    def score(self, spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        logits = torch.from_numpy(predictions).double()
        answers = torch.from_numpy(targets).long()
        loss = -torch.log_softmax(logits, dim=-1).gather(-1, answers.unsqueeze(-1)).mean().item()
        accuracy = (logits.argmax(-1) == answers).double().mean().item()
        return {"accuracy": accuracy, "heldout_loss": loss, "bits_per_char": loss / math.log(2)}
