"""Is a new proposal new? Embedding similarity against earlier proposals, and source-hash duplicates.

`NoveltyCheck.judge(text, earlier)` embeds the proposal and every earlier proposal's text with
the store's embedding function and calls it a near-duplicate when the cosine similarity to
the nearest reaches `threshold` (0.92 by default). `judge_source(hash, evaluated)` calls a
module a duplicate when its source hash equals an evaluated candidate's. Either way the
verdict carries the earlier item, so the caller can show the model what it repeated.

What it does not do: decide what happens next (the planner is asked again a bounded number of
times) or catch modules that differ in text but compute the same function (the functional
hash in `evaluators` does that).
"""
from __future__ import annotations

from dataclasses import dataclass

from chromadb.api.types import EmbeddingFunction

from knowledge.embedders import cosine

DEFAULT_THRESHOLD = 0.92


@dataclass(frozen=True)
class Earlier:
    id: str          # e.g. a candidate id
    text: str        # the proposal as words (hypothesis and change)


@dataclass(frozen=True)
class Verdict:
    novel: bool
    similarity: float = 0.0        # cosine to the nearest earlier proposal (1.0 for a hash duplicate)
    nearest: Earlier | None = None
    reason: str = ""               # "" when novel; else why, naming the nearest

    def __bool__(self) -> bool:
        return self.novel


class NoveltyCheck:
    def __init__(self, embed: EmbeddingFunction, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"novelty threshold must be in (0, 1], got {threshold}")
        self.embed = embed
        self.threshold = threshold
        self._cache: dict[str, object] = {}      # text -> vector; earlier proposals are embedded once

    def _vectors(self, texts: list[str]) -> list[object]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for text, vector in zip(missing, self.embed(missing)):
                self._cache[text] = vector
        return [self._cache[t] for t in texts]

    def judge(self, text: str, earlier: list[Earlier]) -> Verdict:
        """Novel unless some earlier proposal is at least `threshold`-similar; the nearest is returned either way."""
        earlier = [e for e in earlier if e.text.strip()]
        if not earlier or not text.strip():
            return Verdict(novel=True)
        vectors = self._vectors([text] + [e.text for e in earlier])
        scores = [cosine(vectors[0], v) for v in vectors[1:]]
        best = max(range(len(scores)), key=scores.__getitem__)
        similarity, nearest = float(scores[best]), earlier[best]
        if similarity >= self.threshold:
            return Verdict(novel=False, similarity=similarity, nearest=nearest,
                           reason=f"cosine similarity {similarity:.3f} to {nearest.id} (threshold {self.threshold:g})")
        return Verdict(novel=True, similarity=similarity, nearest=nearest)

    @staticmethod
    def judge_source(source_hash: str, evaluated: dict[str, str]) -> Verdict:
        """`evaluated` maps source hash -> candidate id; an equal hash is a duplicate."""
        if source_hash in evaluated:
            cid = evaluated[source_hash]
            return Verdict(novel=False, similarity=1.0, nearest=Earlier(id=cid, text=""),
                           reason=f"the module is identical to {cid}'s")
        return Verdict(novel=True)
