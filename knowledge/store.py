"""The knowledge store: Chroma collections of findings (and literature principles), searched by meaning.

Two homes, one behaviour: by default an embedded Chroma store on disk (`<run>/knowledge`,
or a directory several runs share), or, with `url`, a Chroma server (`chroma run`, or the
`chroma` service of the repository's docker-compose.yml) through `chromadb.HttpClient`. The
collections, their cosine space, the records kept and the embedder are the same in both
(`tests/test_knowledge_conformance.py` runs one suite over both): runs pointed at one
server see each other's findings as soon as they are written. The embedder is always passed
explicitly and runs in this process (Chroma's default would download a model); the server
only stores and searches vectors.

What it does not do: authenticate to a server (put one behind your own proxy), or merge an
on-disk store into a server.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import chromadb
import httpx
from chromadb.api.types import EmbeddingFunction
from chromadb.config import Settings as ChromaSettings

from knowledge.records import Finding

FINDINGS = "findings"
PRINCIPLES = "principles"


class KnowledgeStoreUnavailable(RuntimeError):
    """The Chroma server named by `knowledge.url` cannot be reached: an infrastructure fault."""


class KnowledgeStore:
    def __init__(self, path: Path | None, embedder: EmbeddingFunction, url: str | None = None):
        self.embedder = embedder
        self.url = url
        self.path = Path(path) if path is not None and url is None else None
        if url is not None:
            self.client = _http_client(url)
        else:
            if path is None:
                raise ValueError("a knowledge store needs a directory (path) or a Chroma server (url)")
            Path(path).mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        self.findings = self._collection(FINDINGS)

    @property
    def where(self) -> str:
        """Where the findings live, for messages: the server's URL or the directory."""
        return self.url or str(self.path)

    def _collection(self, name: str):
        return self.client.get_or_create_collection(name, embedding_function=self.embedder,
                                                    metadata={"hnsw:space": "cosine"})

    def add(self, finding: Finding) -> Finding:
        """Store (or overwrite) a finding; returns it with its embedding id set."""
        stored = finding.model_copy(update={"embedding_id": finding.id})
        self.findings.upsert(ids=[finding.id], documents=[finding.text],
                             metadatas=[{"kind": finding.kind, "task": finding.task,
                                         "record": stored.model_dump_json()}])
        return stored

    def nearest(self, text: str, k: int = 5, task: str | None = None,
                keep: Callable[[Finding], bool] | None = None) -> list[tuple[Finding, float]]:
        """Up to k findings closest in meaning to `text`, with their cosine distance; with `keep`, only those it
        keeps (the nearest k of them: the query widens until k are kept or none is left)."""
        where = {"task": task} if task else None
        wanted = k
        while True:
            asked = min(wanted, self.findings.count())
            if asked == 0:
                return []
            hits = self.findings.query(query_texts=[text], n_results=asked, where=where,
                                       include=["metadatas", "distances"])
            found = [(Finding.model_validate(json.loads(meta["record"])), float(distance))
                     for meta, distance in zip(hits["metadatas"][0], hits["distances"][0])]
            kept = [hit for hit in found if keep is None or keep(hit[0])]
            # counted again after the query: findings other branches added meanwhile widen it, not end it
            if len(kept) >= k or len(found) < asked or asked >= self.findings.count():
                return kept[:k]
            wanted = asked * 2

    def count(self) -> int:
        return self.findings.count()

    def all(self) -> list[Finding]:
        got = self.findings.get(include=["metadatas"])
        return [Finding.model_validate(json.loads(m["record"])) for m in got["metadatas"]]

    def principles(self):
        """The literature collection (filled by `knowledge.literature` on first use), with this store's embedder."""
        return self._collection(PRINCIPLES)


def _http_client(url: str):
    """A client of the Chroma server at `url` (http[s]://host[:port]), checked with one heartbeat."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"knowledge.url {url!r} is not http://HOST:PORT")
    ssl = parts.scheme == "https"
    port = parts.port or (443 if ssl else 8000)
    try:
        client = chromadb.HttpClient(host=parts.hostname, port=port, ssl=ssl,
                                     settings=ChromaSettings(anonymized_telemetry=False))
        client.heartbeat()
    except (ValueError, ConnectionError, httpx.HTTPError) as exc:   # chromadb says "could not connect" as a ValueError
        raise KnowledgeStoreUnavailable(
            f"no Chroma server at {parts.scheme}://{parts.hostname}:{port}: {str(exc).splitlines()[0][:300]}. "
            "Start one (`chroma run --path DIR --port PORT`, or `docker compose up -d chroma`) or unset "
            "knowledge.url for the on-disk store in the run directory") from None
    return client


def check_server(url: str | None) -> None:
    """One heartbeat to the Chroma server at `url` (None: nothing to check); KnowledgeStoreUnavailable if none."""
    if url is not None:
        _http_client(url)
