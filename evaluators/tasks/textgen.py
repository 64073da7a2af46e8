"""Host side: the default `charlm` corpus, English-like text drawn from the host's secret.

Why not real text: every text a machine ships (the standard library's docstrings, package
documentation, licences) is readable inside the sandbox, so a candidate could rebuild the
corpus and look up every held-out continuation (it did: 0.99 held-out accuracy with 256
parameters). This text has real words and a structure to learn, and no copy of it exists
outside the host's secret directory.

The language: the `VOCABULARY` most frequent lower-case words of the standard library's
docstrings (public: spelling is what a character model learns first), each put in one of
`CLASSES` word classes at random; a class-to-class transition table (sparse, Dirichlet
rows) drawn from the secret, and within a class a Zipf law over its words in their order of
real use. Sentences open
with a capital letter, carry commas now and then, and end with a full stop; a blank line
now and then ends a paragraph. What a model can learn is spelling, the transition table and
the punctuation habits; what it cannot learn is the secret draw itself, so the held-out text
is as predictable as the language allows, and no more.

What this does not give: the statistics of natural prose (no long-range topic, no syntax
beyond the class bigram), and the same corpus on another machine (another secret, another
language of the same shape: numbers agree across machines only within noise).
"""
from __future__ import annotations

import collections
import re

import numpy as np

from evaluators.heldout import seed

TEXTGEN_VERSION = 1     # bump when the language changes, so caches are rebuilt
VOCABULARY = 2048       # word types
CLASSES = 48            # word classes of the transition table
SPARSITY = 0.08         # Dirichlet concentration of a class's successors: small, so each class has a few favourites
SENTENCE_WORDS = 12     # mean sentence length in words


def vocabulary(source_text: bytes, size: int = VOCABULARY) -> list[str]:
    """The `size` most frequent lower-case words (2-12 letters) of `source_text`, most frequent first."""
    words = re.findall(r"\b[a-z]{2,12}\b", source_text.decode("utf-8", "replace"))
    return [w for w, _ in collections.Counter(words).most_common(size)]   # ties: first seen first


def generate(secret: bytes, words: list[str], max_bytes: int) -> bytes:
    """`max_bytes` of text in the secret's language over `words` (deterministic for both)."""
    rng = np.random.default_rng(seed(secret, "charlm-corpus", TEXTGEN_VERSION))
    classes = rng.integers(0, CLASSES, len(words))
    members = [np.flatnonzero(classes == c) for c in range(CLASSES)]
    members = [m if len(m) else np.array([0]) for m in members]   # most frequent first: Zipf ranks follow real use
    transition = np.cumsum(rng.dirichlet(np.full(CLASSES, SPARSITY), CLASSES), axis=1)        # [C, C]
    emission = [np.cumsum(1.0 / np.arange(1, len(m) + 1)) / np.sum(1.0 / np.arange(1, len(m) + 1)) for m in members]
    out: list[str] = []
    size, state, fresh = 0, int(rng.integers(CLASSES)), True
    while size < max_bytes:
        draws = rng.random(4096 * 4).reshape(4096, 4)           # a block of uniform draws, used four per word
        for u_class, u_word, u_end, u_comma in draws:
            state = min(int(np.searchsorted(transition[state], u_class)), CLASSES - 1)
            pick = members[state][min(int(np.searchsorted(emission[state], u_word)), len(members[state]) - 1)]
            word = words[pick].capitalize() if fresh else words[pick]
            if u_end < 1.0 / SENTENCE_WORDS:
                word += ".\n\n" if u_comma < 0.1 else ". "
                fresh = True
            else:
                word += ", " if u_comma < 0.06 else " "
                fresh = False
            out.append(word)
            size += len(word)
            if size >= max_bytes:
                break
    return "".join(out).encode("ascii")[:max_bytes]
