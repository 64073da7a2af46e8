"""The knowledge store: a Chroma persistent collection of findings, searched by meaning.

One store per run by default (`<run>/knowledge`); point several runs at one directory and
later runs retrieve what earlier ones learned. The embedder is always passed explicitly
(Chroma's default would download a model).
"""
from __future__ import annotations

import json
from pathlib import Path

import chromadb
from chromadb.api.types import EmbeddingFunction
from chromadb.config import Settings as ChromaSettings

from knowledge.records import Finding

FINDINGS = "findings"
PRINCIPLES = "principles"


class KnowledgeStore:
    def __init__(self, path: Path, embedder: EmbeddingFunction):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self.embedder = embedder
        self.client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        self.findings = self.client.get_or_create_collection(
            FINDINGS, embedding_function=embedder, metadata={"hnsw:space": "cosine"})

    def add(self, finding: Finding) -> Finding:
        """Store (or overwrite) a finding; returns it with its embedding id set."""
        stored = finding.model_copy(update={"embedding_id": finding.id})
        self.findings.upsert(ids=[finding.id], documents=[finding.text],
                             metadatas=[{"kind": finding.kind, "task": finding.task,
                                         "record": stored.model_dump_json()}])
        return stored

    def nearest(self, text: str, k: int = 5, task: str | None = None) -> list[tuple[Finding, float]]:
        """Up to k findings closest in meaning to `text`, with their cosine distance."""
        count = self.findings.count()
        if count == 0:
            return []
        where = {"task": task} if task else None
        hits = self.findings.query(query_texts=[text], n_results=min(k, count), where=where,
                                   include=["metadatas", "distances"])
        return [(Finding.model_validate(json.loads(meta["record"])), float(distance))
                for meta, distance in zip(hits["metadatas"][0], hits["distances"][0])]

    def count(self) -> int:
        return self.findings.count()

    def all(self) -> list[Finding]:
        got = self.findings.get(include=["metadatas"])
        return [Finding.model_validate(json.loads(m["record"])) for m in got["metadatas"]]

    def principles(self):
        """The literature collection (filled by `knowledge.literature` on first use), with this store's embedder."""
        return self.client.get_or_create_collection(
            PRINCIPLES, embedding_function=self.embedder, metadata={"hnsw:space": "cosine"})
