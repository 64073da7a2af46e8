"""One conformance suite for both homes of the knowledge store: embedded on disk, and a real Chroma server.

The server is `chroma run --host 127.0.0.1 --port P --path DIR` (the CLI that the chromadb
package ships), started once for this module; each test starts from empty collections. Every
case runs on both, and then two real `archlab run`s pointed at one server see each other's
findings. Under CI a server that does not start fails the tests; elsewhere they skip, saying why.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowledge.embedders import HashingEmbedder
from knowledge.literature import Literature, load_entries
from knowledge.records import Finding
from knowledge.store import FINDINGS, PRINCIPLES, KnowledgeStore, KnowledgeStoreUnavailable
from tests.runs_support import archlab, events, only_run

STORES = ("embedded", "server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """The URL of a Chroma server on loopback, for the whole module; stopped (by its pid) afterwards."""
    chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data.parent / f"{data.name}.log", "wb")
    try:
        proc = subprocess.Popen([chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        _unavailable(f"cannot start `chroma run` ({exc}); it ships with the chromadb package")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                KnowledgeStore(None, HashingEmbedder(), url=url).client.heartbeat()
                break
            except KnowledgeStoreUnavailable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _unavailable(f"`chroma run` did not come up on {url}: "
                                 f"{(data.parent / f'{data.name}.log').read_text(errors='replace')[-1000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _unavailable(message: str):
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"under CI the Chroma server tests may not skip: {message}")
    pytest.skip(message)


@pytest.fixture(params=STORES)
def open_store(request, tmp_path):
    """`open_store()`: a KnowledgeStore at this test's location, embedded or on the server; a second call is
    another client of the same store, as a second run would be."""
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        _empty(url)                               # every test starts from empty collections
        return lambda: KnowledgeStore(None, HashingEmbedder(), url=url)
    return lambda: KnowledgeStore(tmp_path / "kb", HashingEmbedder())


def _empty(url: str) -> None:
    client = KnowledgeStore(None, HashingEmbedder(), url=url).client
    for collection in client.list_collections():
        if collection.name in (FINDINGS, PRINCIPLES):
            client.delete_collection(collection.name)


def _finding(i, text, kind="insight", task="mqar"):
    return Finding(id=f"run-c{i}-{kind}", text=text, kind=kind, task=task, candidate_ids=[f"c{i}"],
                   evidence={"accuracy": 0.5 + i / 100})


def test_findings_persist_and_come_back_nearest_first(open_store):
    store = open_store()
    assert store.count() == 0 and store.nearest("anything") == []
    store.add(_finding(1, "short convolution before linear attention raised MQAR accuracy"))
    store.add(_finding(2, "RMSNorm instead of LayerNorm did not change accuracy"))
    store.add(_finding(3, "candidate failed: model is not causal", kind="failure"))
    store.add(_finding(4, "short convolution on charlm", task="charlm"))
    reopened = open_store()
    assert reopened.count() == 4
    hits = reopened.nearest("does a short convolution help recall?", k=2, task="mqar")
    assert [f.id for f, _ in hits][0] == "run-c1-insight"
    assert all(f.task == "mqar" for f, _ in hits) and len(hits) == 2
    assert hits[0][0].embedding_id == hits[0][0].id and hits[0][0].evidence == {"accuracy": 0.51}
    assert hits[0][1] <= hits[1][1]                                       # nearest first
    assert {f.id for f in reopened.all()} == {"run-c1-insight", "run-c2-insight", "run-c3-failure",
                                              "run-c4-insight"}


def test_distances_are_cosine(open_store):
    store = open_store()
    text = "gated linear attention with a forget gate"
    store.add(_finding(1, text))
    store.add(_finding(2, "the weather in Paris is mild"))
    hits = dict((f.id, d) for f, d in store.nearest(text, k=2))
    assert hits["run-c1-insight"] == pytest.approx(0.0, abs=1e-5)       # the same text: cosine distance 0
    assert 0.5 < hits["run-c2-insight"] <= 2.0                            # unrelated: far, and cosine is at most 2


def test_adding_a_finding_again_overwrites_it(open_store):
    store = open_store()
    store.add(_finding(1, "first wording"))
    store.add(_finding(1, "second wording"))
    assert store.count() == 1
    assert [f.text for f in open_store().all()] == ["second wording"]


def test_a_second_client_sees_findings_as_soon_as_they_are_written(open_store):
    writer, reader = open_store(), open_store()
    assert reader.count() == 0
    writer.add(_finding(7, "a second run's insight about token shift"))
    assert [f.id for f, _ in reader.nearest("token shift", k=3)] == ["run-c7-insight"]


def test_literature_loads_once_into_the_same_store(open_store):
    entries = load_entries()
    assert Literature(open_store()).ensure_loaded() == len(entries)
    again = Literature(open_store())
    assert again.ensure_loaded() == len(entries)                          # nothing duplicated on a second load
    hits = again.nearest(entries[0].principle, k=3)
    assert hits[0][0].id == entries[0].id and hits[0][1] < hits[1][1]   # its own principle, nearest first
    assert open_store().count() == 0                                      # principles never mix with findings


def test_a_server_that_is_not_there_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                         # bound, never listening
        with pytest.raises(KnowledgeStoreUnavailable, match=rf"no Chroma server at http://127.0.0.1:{port}"):
            KnowledgeStore(None, HashingEmbedder(), url=f"http://127.0.0.1:{port}")


def test_two_runs_sharing_one_server_see_each_others_findings(tmp_path, chroma_server):
    _empty(chroma_server)
    shared = {"ARCHLAB_KNOWLEDGE__URL": chroma_server}
    first = archlab("run", "--rounds", "1", "--random-pool", "0", "--runs-dir", str(tmp_path / "a"), extra_env=shared)
    assert first.returncode == 0, first.stdout + first.stderr
    first_dir = only_run(tmp_path / "a")
    first_id = first_dir.name
    written = KnowledgeStore(None, HashingEmbedder(), url=chroma_server).all()
    assert written and all(f.id.startswith(first_id) for f in written)  # the findings went to the server ...
    assert not (first_dir / "knowledge").exists()                          # ... and not to the run directory
    assert json.loads((first_dir / "run.json").read_text())["settings"]["knowledge"]["url"] == chroma_server

    second = archlab("run", "--rounds", "1", "--random-pool", "0", "--seed", "1", "--runs-dir", str(tmp_path / "b"),
                     extra_env=shared)
    assert second.returncode == 0, second.stdout + second.stderr
    second_dir = only_run(tmp_path / "b")
    retrieved = {i for e in events(second_dir) if e["type"] == "retrieval" for i in e["payload"]["finding_ids"]}
    assert any(i.startswith(first_id) for i in retrieved), retrieved       # run 2's planner read run 1's findings
    after = KnowledgeStore(None, HashingEmbedder(), url=chroma_server).all()
    assert {f.id for f in written} <= {f.id for f in after}               # nothing of run 1's was overwritten
    assert any(f.id.startswith(second_dir.name) for f in after)            # and run 2's findings joined them
