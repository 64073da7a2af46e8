"""How a branch or a run ends when the engine cannot help: a functional twin of the parent goes back to the coder,
an unusable plan ends only its branch, and nothing left to propose ends the run cleanly."""
from __future__ import annotations

import json

from agents.engine import ProposalFailed
from agents.offline.engine import NoProposal, OfflineEngine
from archlab.session import drive, open_lab, start_run
from archlab.settings import load_settings

TINY = {"seq_len": 32, "num_pairs": 4, "num_queries": 4, "short_steps": 20}


def _run(tmp_path, engine, rounds: int = 1, batch: int = 1):
    settings = load_settings(None, rounds=rounds, runs_dir=tmp_path, knowledge__embedder="hashing",
                             executor__workers=2, loop__batch=batch, loop__random_pool=0, task_options=TINY)
    run_id, run_dir = start_run(settings)
    with open_lab(settings, run_id, run_dir, engine=engine) as lab:
        outcome = drive(lab)
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return outcome, run_dir, log


class ParentCopier(OfflineEngine):
    """Its coder returns the parent's module with a comment added: the planned change is not implemented."""

    def __init__(self, seed):
        super().__init__(seed)
        self.fix_messages = []

    def code(self, plan, parent, spec, **context):
        return "# the change, as promised\n" + parent.source

    def fix(self, plan, source, failure, attempt, **context):
        self.fix_messages.append(failure.message)
        return None


def test_a_functional_twin_of_the_parent_goes_back_to_the_coder_before_training(tmp_path):
    engine = ParentCopier(0)
    outcome, run_dir, log = _run(tmp_path, engine)
    assert outcome == "finished"
    twins = [e["payload"] for e in log if e["type"] == "parent_twin"]
    assert twins and twins[0]["candidate_id"] == "c001"
    assert engine.fix_messages and "not implemented" in engine.fix_messages[0]
    assert twins[0]["parent_id"] in engine.fix_messages[0]
    record = json.loads((run_dir / "candidates" / "c001" / "candidate.json").read_text())
    assert record["status"] == "failed" and record["evaluations"]["check"]["status"] == "invalid"
    assert not [e for e in log if e["type"] == "job_started" and e["payload"]["candidate_id"] == "c001"
                and e["payload"]["fidelity"] != "check"]            # nothing was trained


class Mute(OfflineEngine):
    """A planner whose answers are never usable."""

    def plan(self, context):
        raise ProposalFailed("the planner model gave no usable plan in 3 answers")


def test_an_unusable_plan_ends_its_branch_and_the_run_goes_on(tmp_path):
    outcome, run_dir, log = _run(tmp_path, Mute(0), rounds=2, batch=2)
    assert outcome == "finished" and log[-1]["type"] == "run_finished"
    failed = [e["payload"]["candidate_id"] for e in log if e["type"] == "plan_failed"]
    assert sorted(failed) == ["c001", "c002", "c003", "c004"]
    assert sum(e["type"] == "round_started" for e in log) == 2       # the next round was still tried
    assert not (run_dir / "candidates" / "c001").exists()


class Exhausted(OfflineEngine):
    def plan(self, context):
        raise NoProposal(f"every change to {context.parent.id} has been tried")


def test_nothing_left_to_propose_ends_the_run_cleanly(tmp_path):
    outcome, run_dir, log = _run(tmp_path, Exhausted(0), rounds=3, batch=2)
    assert outcome == "finished"
    # batch 2 + lookahead 1: three branches in flight; the first to end empty-handed frees room for a fourth, and
    # none is proposed once two (a batch) in a row found nothing
    proposals = [e["payload"]["candidate_ids"][0] for e in log if e["type"] == "parents_selected"]
    assert proposals == ["c001", "c002", "c003", "c004"]
    ended = [i for i, e in enumerate(log) if e["type"] == "search_exhausted"]
    assert len(ended) == 1 and not any(e["type"] == "parents_selected" for e in log[ended[0]:])
    assert sum(e["type"] == "branch_exhausted" for e in log) == 4      # the branches in flight still end cleanly
    assert "nothing new to propose" in log[ended[0]]["payload"]["reason"]


def failing_everything(sandbox, job, jobdir):
    """Every job fails as a crashing candidate would: nothing in the run ever gets a score."""
    from wire.jobs import EvalResult
    return EvalResult(job_id=job.job_id, candidate_id=job.candidate_id, status="error", fidelity=job.fidelity,
                      message="RuntimeError: the module crashed")


def test_a_task_where_every_candidate_fails_ends_with_a_report(tmp_path):
    import subprocess
    import sys
    settings = load_settings(None, rounds=2, runs_dir=tmp_path, knowledge__embedder="hashing", executor__workers=2,
                             loop__random_pool=2, task_options=TINY)
    run_id, run_dir = start_run(settings)
    with open_lab(settings, run_id, run_dir, evaluator=failing_everything) as lab:
        assert drive(lab) == "finished"
    log = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    ended = [e for e in log if e["type"] == "search_exhausted"]
    assert ended and "no candidate has a score" in ended[0]["payload"]["reason"]
    shown = subprocess.run([sys.executable, "-m", "archlab.cli", "show", str(run_dir)], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "best: none yet" in shown.stdout and "Traceback" not in shown.stdout + shown.stderr
