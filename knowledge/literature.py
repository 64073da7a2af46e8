"""The literature "cognition base": design principles from the reading list, searched by meaning.

`knowledge/literature.json` (package data) holds one entry per paper, written in our own
words: {id, title, year, idea, principle, applies_to}. `Literature(store).nearest(query, k)`
loads the entries into the store's `principles` Chroma collection the first time it is
needed (and again whenever the file's entries change), then returns the k principles nearest
in meaning to the query, with their cosine distance.

What it does not do: judge whether a principle holds for this task. The planner sees them as
hints next to the lab's own findings, which carry measured evidence.
"""
from __future__ import annotations

import json
from importlib import resources

from pydantic import BaseModel, Field

from knowledge.store import KnowledgeStore


class Principle(BaseModel):
    id: str
    title: str
    year: int = Field(ge=1950, le=2100)
    idea: str              # what the paper did, in a sentence or two
    principle: str         # the design principle it suggests
    applies_to: list[str] = Field(default_factory=list)   # tags: sequence_mixer, recall, ffn, decoding, ...

    def document(self) -> str:
        """What gets embedded: the principle first, then the idea and the tags."""
        return f"{self.principle} {self.idea} ({self.title}; applies to {', '.join(self.applies_to)})"


def load_entries() -> list[Principle]:
    text = resources.files("knowledge").joinpath("literature.json").read_text(encoding="utf-8")
    return [Principle.model_validate(entry) for entry in json.loads(text)]


class Literature:
    def __init__(self, store: KnowledgeStore, entries: list[Principle] | None = None):
        self.store = store
        self.entries = entries if entries is not None else load_entries()
        self._loaded = False

    def ensure_loaded(self) -> int:
        """Bring the `principles` collection in line with the entries (once per instance); returns the count."""
        collection = self.store.principles()
        if not self._loaded:
            wanted = {e.id: e.model_dump_json() for e in self.entries}
            held = collection.get(include=["metadatas"])
            have = {i: (m or {}).get("record") for i, m in zip(held["ids"], held["metadatas"])}
            changed = [e for e in self.entries if have.get(e.id) != wanted[e.id]]
            if changed:
                collection.upsert(ids=[e.id for e in changed], documents=[e.document() for e in changed],
                                  metadatas=[{"year": e.year, "record": wanted[e.id]} for e in changed])
            stale = sorted(set(have) - set(wanted))
            if stale:
                collection.delete(ids=stale)
            self._loaded = True
        return collection.count()

    def nearest(self, query: str, k: int = 4) -> list[tuple[Principle, float]]:
        """Up to k principles closest in meaning to `query`, with their cosine distance."""
        if k <= 0 or not query.strip():
            return []
        count = self.ensure_loaded()
        if count == 0:
            return []
        hits = self.store.principles().query(query_texts=[query], n_results=min(k, count),
                                             include=["metadatas", "distances"])
        return [(Principle.model_validate_json(meta["record"]), float(distance))
                for meta, distance in zip(hits["metadatas"][0], hits["distances"][0])]
