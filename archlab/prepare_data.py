"""`archlab prepare-data`: a text file to the token files the `lm` task trains and scores on.

What it writes into the output directory (nanoGPT's layout, so the files are useful elsewhere):
- `train.bin`, `val.bin`: the token ids as raw little-endian uint16 (read with `np.memmap`);
  the last `val_fraction` of the text (cut at a line break) is the validation split;
- `token_bytes.npy`: how many bytes of text each token id stands for (0 for special tokens),
  so that the task's held-out loss becomes bits per byte, comparable across tokenizers;
- `tokenizer.json` (for BPE) and `meta.json`: tokenizer, vocab_size, token and byte counts of
  each split, the source file, and the sha256 of every file (the task refuses files that
  changed since).

Tokenizers: `byte` (ids are the bytes, vocabulary 256), `bpe:VOCAB` (byte-level BPE trained
here with the `tokenizers` library on the training split only, so the validation text never
shapes it; cached under ~/.cache/archlab/tokenizers by the text's hash and VOCAB, so preparing
the same text again trains nothing), or a path to a `tokenizer.json` of your own (its ids must
fit in uint16). Nothing is downloaded.

What this module does not do: print (the CLI draws the progress bar from `progress`), or
decide how the task uses the files (`evaluators.tasks.lm`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from evaluators.tasks.lm import META, file_sha256

CHUNK_BYTES = 1 << 20          # text tokenised (and progress reported) a megabyte at a time
MAX_VOCAB = 65_535             # uint16 ids
Progress = Callable[[str, int, int], None]      # (stage, done, total) in bytes of text


class PrepareError(ValueError):
    """The text, the tokenizer or the output cannot be used; the message says what to change."""


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "archlab" / "tokenizers"


def default_out(text: Path, tokenizer: str) -> Path:
    """Where the files go when no --out is given: data/<text's stem>-<tokenizer> in the working directory."""
    tag = Path(tokenizer).stem if tokenizer.endswith(".json") else tokenizer.replace(":", "")
    return Path("data") / f"{text.stem}-{tag}"


def _split(data: bytes, val_fraction: float) -> tuple[bytes, bytes]:
    """(train, val): the last `val_fraction` of the text, from the line break nearest the cut."""
    cut = int(len(data) * (1 - val_fraction))
    newline = data.rfind(b"\n", 0, cut)
    if newline > len(data) // 2:
        cut = newline + 1
    return data[:cut], data[cut:]


def _chunks(data: bytes) -> list[bytes]:
    """`data` in pieces of about CHUNK_BYTES, cut after a line break where there is one (BPE merges do not cross)."""
    pieces, start = [], 0
    while start < len(data):
        end = min(len(data), start + CHUNK_BYTES)
        if end < len(data):
            newline = data.rfind(b"\n", start, end)
            end = newline + 1 if newline > start else end
        pieces.append(data[start:end])
        start = end
    return pieces


class _Tokenizer:
    """One interface over the byte tokenizer and a `tokenizers` one: encode bytes, the vocabulary, bytes per id."""

    def __init__(self, name: str, hf=None):
        self.name, self.hf = name, hf
        self.vocab_size = 256 if hf is None else hf.get_vocab_size()
        if self.vocab_size > MAX_VOCAB + 1:
            raise PrepareError(f"the tokenizer has {self.vocab_size} ids; uint16 token files hold at most "
                               f"{MAX_VOCAB + 1}: use a smaller vocabulary")

    def encode(self, piece: bytes) -> np.ndarray:
        if self.hf is None:
            return np.frombuffer(piece, dtype=np.uint8).astype(np.uint16)
        return np.asarray(self.hf.encode(piece.decode("utf-8", "replace")).ids, dtype=np.uint16)

    def token_bytes(self) -> np.ndarray:
        """Bytes of text each id stands for: a byte-level token's characters map one to one onto bytes."""
        if self.hf is None:
            return np.ones(256, dtype=np.int64)
        from tokenizers import pre_tokenizers
        byte_level = "ByteLevel" in json.dumps(json.loads(self.hf.to_str()).get("pre_tokenizer") or {})
        alphabet = set(pre_tokenizers.ByteLevel.alphabet()) if byte_level else set()
        special = {t.content for t in self.hf.get_added_tokens_decoder().values() if t.special}
        sizes = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in self.hf.get_vocab().items():
            if token in special:
                continue
            if byte_level and all(ch in alphabet for ch in token):
                sizes[index] = len(token)
            else:
                sizes[index] = len(self.hf.decode([index]).encode("utf-8"))
        return sizes


def _train_bpe(train: bytes, vocab: int, progress: Progress | None) -> "object":
    """A byte-level BPE of `vocab` ids trained on `train`, from the cache when this text and size were done before."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    key = hashlib.sha256(train).hexdigest()[:20]
    cached = _cache_dir() / f"bpe{vocab}-{key}.json"
    if cached.is_file():
        return Tokenizer.from_file(str(cached))
    if progress:
        progress("training BPE", 0, len(train))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer.train_from_iterator((piece.decode("utf-8", "replace") for piece in _chunks(train)), trainer=trainer)
    if progress:
        progress("training BPE", len(train), len(train))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tokenizer.save(str(tmp))
        os.replace(tmp, cached)
    except OSError:
        pass                    # no cache: the next run trains it again
    return tokenizer


def _tokenizer(spec: str, train: bytes, progress: Progress | None) -> _Tokenizer:
    if spec == "byte":
        return _Tokenizer("byte")
    if spec.startswith("bpe:"):
        try:
            vocab = int(spec[4:])
        except ValueError:
            raise PrepareError(f"--tokenizer {spec}: write bpe:VOCAB with VOCAB a number, e.g. bpe:4096") from None
        if not 257 <= vocab <= MAX_VOCAB + 1:
            raise PrepareError(f"--tokenizer {spec}: VOCAB must be between 257 and {MAX_VOCAB + 1} (uint16 ids)")
        return _Tokenizer(spec, _train_bpe(train, vocab, progress))
    path = Path(spec).expanduser()
    if path.suffix == ".json" and path.is_file():
        from tokenizers import Tokenizer
        try:
            return _Tokenizer(f"file:{path.name}", Tokenizer.from_file(str(path)))
        except Exception as exc:            # noqa: BLE001 - the library's error says what is wrong with the file
            raise PrepareError(f"{path} is not a tokenizer file the tokenizers library can read: {exc}") from None
    raise PrepareError(f"--tokenizer {spec!r}: use byte, bpe:VOCAB (e.g. bpe:4096) or a path to a tokenizer.json")


def _write_tokens(tokenizer: _Tokenizer, data: bytes, path: Path, stage: str, progress: Progress | None) -> int:
    """Tokenise `data` a chunk at a time into `path` (raw uint16); the number of tokens."""
    count, done = 0, 0
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        for piece in _chunks(data):
            ids = tokenizer.encode(piece)
            handle.write(ids.astype("<u2").tobytes())
            count += len(ids)
            done += len(piece)
            if progress:
                progress(stage, done, len(data))
    os.replace(tmp, path)
    return count


def prepare(text: Path, tokenizer: str = "byte", out: Path | None = None, val_fraction: float = 0.1,
            progress: Progress | None = None) -> Path:
    """Write train.bin, val.bin, token_bytes.npy and meta.json for `text` into `out`; the directory."""
    text = Path(text).expanduser()
    if not text.is_file():
        raise PrepareError(f"{text} is not a readable file; give a text file with --text")
    if not 0 < val_fraction < 0.5:
        raise PrepareError("--val-fraction must be between 0 and 0.5")
    data = text.read_bytes()
    if len(data) < 20_000:
        raise PrepareError(f"{text} has {len(data)} bytes; the lm task needs at least 20 KB of text (held-out "
                           "windows come from the last tenth)")
    out = Path(out) if out is not None else default_out(text, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    train, val = _split(data, val_fraction)
    tok = _tokenizer(tokenizer, train, progress)
    counts = {"train": _write_tokens(tok, train, out / "train.bin", "train.bin", progress),
              "val": _write_tokens(tok, val, out / "val.bin", "val.bin", progress)}
    np.save(out / "token_bytes.npy", tok.token_bytes(), allow_pickle=False)
    files = ["train.bin", "val.bin", "token_bytes.npy"]
    if tok.hf is not None:
        tok.hf.save(str(out / "tokenizer.json"))
        files.append("tokenizer.json")
    meta = {"format": 1, "tokenizer": tok.name, "vocab_size": tok.vocab_size, "dtype": "uint16",
            "source": str(text.resolve()), "source_sha256": hashlib.sha256(data).hexdigest(),
            "train_tokens": counts["train"], "val_tokens": counts["val"],
            "train_bytes": len(train), "val_bytes": len(val),
            "sha256": {name: file_sha256(out / name) for name in files}}
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out
