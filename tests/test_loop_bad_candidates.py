"""Candidates that raise, return the wrong shape, hang or eat memory: each is classified, logged, and the loop goes on."""
from __future__ import annotations

import json

from agents.offline.engine import OfflineEngine
from archlab.session import drive, open_lab, start_run
from archlab.settings import load_settings
from tests.hostile_cases import MEMORY_BOMB, MODEL

BAD = {
    1: MODEL.replace("def build_model(spec):\n", "def build_model(spec):\n    raise RuntimeError('width must be even')\n"),
    2: MODEL.replace("return self.emb(x)", "return self.emb(x)[:, :, :3]"),
    3: "import torch\ndef build_model(spec):\n    while True:\n        torch.zeros(1)\n",
    4: MEMORY_BOMB.replace("hog = []", "import torch\ndef build_model(spec):\n    hog = []").replace(
        "while True:\n    hog", "    while True:\n        hog"),
}


class BadCoder(OfflineEngine):
    """The offline engine, except that its coder writes a broken module for candidates c001-c004."""

    def code(self, plan, parent, spec):
        return BAD.get(int(plan.candidate_id[1:]), super().code(plan, parent, spec))

    def fix(self, plan, source, failure, attempt, **context):
        return None


def test_bad_candidates_are_classified_and_the_loop_goes_on(tmp_path):
    # two candidates per round, side by side: the bad ones share rounds with each other and with good ones
    settings = load_settings(None, rounds=3, runs_dir=tmp_path, sandbox__check_seconds=20, sandbox__memory_mb=512,
                             executor__workers=2, loop__batch=2,
                             knowledge__embedder="hashing",
                             task_options={"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 20})
    run_id, run_dir = start_run(settings)
    with open_lab(settings, run_id, run_dir, engine=BadCoder(0)) as lab:
        assert drive(lab) == "finished"
    status = {}
    for cid in ("c001", "c002", "c003", "c004", "c005"):
        record = json.loads((run_dir / "candidates" / cid / "candidate.json").read_text())
        status[cid] = (record["status"], record["evaluations"].get("check", {}).get("status"))
    assert status["c001"] == ("failed", "error")
    assert status["c002"] == ("failed", "invalid")
    assert status["c003"] == ("failed", "timeout")
    assert status["c004"] == ("failed", "oom")
    assert status["c005"][0] == "evaluated"                       # the loop went on
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    messages = {e["payload"]["candidate_id"]: e["payload"]["message"] for e in log
                if e["type"] == "result" and e["payload"]["fidelity"] == "check"}
    assert "width must be even" in messages["c001"]
    assert "expected logits of shape" in messages["c002"]
    assert "wall-clock limit" in messages["c003"]
    assert "memory" in messages["c004"]
    failures = [e for e in log if e["type"] == "finding" and e["payload"]["kind"] == "failure"]
    assert len(failures) == 4                                     # negative results are findings too


class CopyCat(OfflineEngine):
    """Writes c003 as c001's or c002's module again, with renamed identifiers and a comment: the same function."""

    def __init__(self, seed):
        super().__init__(seed)
        self.round_one: dict[str, str] = {}
        self.copied = ""

    def code(self, plan, parent, spec):
        source = super().code(plan, parent, spec)
        if plan.candidate_id in ("c001", "c002"):
            self.round_one[plan.candidate_id] = source
        if plan.candidate_id == "c003":
            # a round-1 candidate that is not c003's parent (a copy of the parent is refused before training)
            self.copied = "c001" if parent.id != "c001" else "c002"
            return ("# an equivalent rewrite\n"
                    + self.round_one[self.copied].replace("Mixer", "TokenMixer").replace("FeedForward", "MLPBlock"))
        return source


def test_a_functional_duplicate_reuses_the_earlier_result(tmp_path):
    # one branch at a time: c003 is proposed after c001 and c002 are collected, so both are twins it may find
    settings = load_settings(None, rounds=3, runs_dir=tmp_path, knowledge__embedder="hashing",
                             executor__workers=1, loop__batch=1, loop__lookahead=0,
                             task_options={"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 20})
    run_id, run_dir = start_run(settings)
    engine = CopyCat(0)
    with open_lab(settings, run_id, run_dir, engine=engine) as lab:
        assert drive(lab) == "finished"
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    hits = [e["payload"] for e in log if e["type"] == "cache_hit"]
    assert hits and hits[0]["candidate_id"] == "c003" and hits[0]["twin_id"] == engine.copied
    trained = [e["payload"]["candidate_id"] for e in log if e["type"] == "job_started" and e["payload"]["fidelity"] == "short"]
    assert engine.copied in trained and "c003" not in trained
    c1, c2 = (json.loads((run_dir / "candidates" / c / "candidate.json").read_text()) for c in (engine.copied, "c003"))
    assert c1["source_hash"] != c2["source_hash"]
    # every rung from the cache hit on is the twin's result, not a new one (whether c003 then goes on to `short` is
    # the screening's call: its cheap score is the twin's, ranked among this round's pool)
    reused = [f for f in ("proxy", "short", "full") if f in c2["evaluations"]]
    assert reused and reused[0] == hits[0]["fidelity"]
    assert all(c2["evaluations"][f]["metrics"] == c1["evaluations"][f]["metrics"] for f in reused)
    assert c2["functional_hash"]
