"""No round barrier: a slow job holds up nobody, each proposal reads only what was collected, and replay agrees.

One offline MQAR run, 2 workers, 2 rounds of 2: c001's `short` job is held (as a long `full`
job would hold its worker) until c004's `short` job has ended. With a round barrier c003 and
c004 could not be proposed before c001 ends, so the held job would time out its wait and the
order below would not come out.
"""
from __future__ import annotations

import json
import threading

import pytest

from archlab.replay import replay
from archlab.session import drive, open_lab, start_run
from archlab.settings import load_settings
from evaluators.harness import evaluate

TINY = {"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 20}
HOLD_SECONDS = 300


@pytest.fixture(scope="module")
def held_run(tmp_path_factory):
    released = threading.Event()
    held = {"waited": False}

    def hold_c001(sandbox, job, jobdir):
        if job.candidate_id == "c001" and job.fidelity == "short":
            held["waited"] = released.wait(HOLD_SECONDS)
        result = evaluate(sandbox, job, jobdir)
        if job.candidate_id == "c004" and job.fidelity == "short":
            released.set()
        return result

    runs = tmp_path_factory.mktemp("steady")
    settings = load_settings(None, rounds=2, runs_dir=runs, knowledge__embedder="hashing", executor__workers=2,
                             loop__batch=2, loop__lookahead=1, loop__proxy_rung=False, loop__random_pool=0,
                             task_options=TINY)
    run_id, run_dir = start_run(settings)
    with open_lab(settings, run_id, run_dir, evaluator=hold_c001) as lab:
        assert drive(lab) == "finished"
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return run_dir, log, held["waited"]


def test_a_slow_job_holds_up_no_other_branch(held_run):
    run_dir, log, waited = held_run
    assert waited, "c004 was never trained while c001's job was held: the run waited for its slowest job"
    results = [e["payload"]["candidate_id"] for e in log if e["type"] == "result" and e["payload"]["fidelity"] == "short"]
    assert results.index("c004") < results.index("c001")
    collected = [e["payload"]["candidate_id"] for e in log if e["type"] == "candidate_collected"
                 and e["payload"]["round"] > 0]
    assert sorted(collected) == ["c001", "c002", "c003", "c004"] and collected[-1] == "c001"
    proposed = [e["payload"]["candidate_ids"][0] for e in log if e["type"] == "parents_selected"]
    assert proposed == ["c001", "c002", "c003", "c004"]
    assert [e["payload"]["round"] for e in log if e["type"] == "round_started"] == [1, 2]


def test_each_proposal_reads_only_what_was_collected_before_it(held_run):
    _, log, _ = held_run
    collected: list[str] = []
    for e in log:
        if e["type"] == "candidate_collected":
            collected.append(e["payload"]["candidate_id"])
        elif e["type"] == "parents_selected":
            chosen = e["payload"]
            assert chosen["visible"] == len(collected)               # the snapshot it recorded is the log's
            assert chosen["parent_ids"][0] in collected              # never a branch still in flight
            assert not set(chosen["ranking"]) - set(collected)
    assert len(collected) == 7          # 3 baselines, then the 4 proposals


def test_the_run_replays_every_decision_however_its_jobs_interleaved(held_run):
    run_dir, _, _ = held_run
    report = replay(run_dir)
    assert report.ok, report.divergence
    assert report.compared > 20


class SameFirstPlan:
    """The offline engine, except that the first plans of c001 and c002 name the same genome and are returned only
    once both branches have planned: two branches planning at the same moment, the race the plan node claims under
    a lock. A plan made again (the genome now among the tried) is the offline engine's own."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.both = threading.Barrier(2, timeout=120)
        self.first: dict[str, dict] = {}
        self.lock = threading.Lock()

    def plan(self, context):
        plan = self.inner.plan(context)
        if context.candidate_id in ("c001", "c002") and context.candidate_id not in self.first:
            with self.lock:
                genome = next(iter(self.first.values()), plan.genome)
                self.first[context.candidate_id] = genome
            plan = plan.model_copy(update={"genome": genome})
            self.both.wait()
        return plan

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_two_branches_planning_at_once_never_claim_the_same_genome(tmp_path):
    from agents.offline.engine import genome_hash
    from archlab.backends import make_engine
    settings = load_settings(None, rounds=1, runs_dir=tmp_path, knowledge__embedder="hashing", executor__workers=2,
                             loop__batch=2, loop__lookahead=0, loop__proxy_rung=False, loop__random_pool=0,
                             loop__noise_seeds=1, task_options=TINY)
    run_id, run_dir = start_run(settings)
    engine = SameFirstPlan(make_engine("offline", settings.seed, settings))
    with open_lab(settings, run_id, run_dir, engine=engine) as lab:
        assert drive(lab) == "finished"
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    plans = {e["payload"]["candidate_id"]: e["payload"]["genome"] for e in log if e["type"] == "plan"}
    assert set(plans) == {"c001", "c002"}
    assert genome_hash(plans["c001"]) != genome_hash(plans["c002"])
    assert list(engine.first.values())[0] in plans.values()          # one of them kept the genome both first named
    report = replay(run_dir)
    assert report.ok, report.divergence
