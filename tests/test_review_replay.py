"""Human review through interrupts, and replay of a recorded run from its log."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runs_support import archlab, events, only_run, start, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)     # two candidates, each and its parent at full over 3 seeds, then replay and re-execution
def test_before_full_review_waits_is_approved_from_the_cli_and_goes_on(tmp_path):
    extra = {"ARCHLAB_REVIEW__POLICY": "before-full", "ARCHLAB_LOOP__PROMOTE_FRACTION": "1.0",
             "ARCHLAB_REVIEW__POLL_SECONDS": "0.2"}
    proc = start("run", "--rounds", "1", "--runs-dir", str(tmp_path), extra_env=extra)
    run_dir = wait_for(lambda: next((p for p in tmp_path.iterdir() if (p / "events.jsonl").exists()), None), 60)
    waiting = wait_for(lambda: [e for e in events(run_dir) if e["type"] == "review_waiting"
                                and e["payload"]["candidate_id"] == "c001"], 180)
    assert waiting[0]["payload"]["fidelity"] == "full"
    assert not any(e["type"] == "job_started" and e["payload"]["fidelity"] == "full" for e in events(run_dir))

    listing = archlab("review", run_dir.name, "--runs-dir", str(tmp_path))
    assert "c001" in listing.stdout and "before full" in listing.stdout
    approved = archlab("review", run_dir.name, "--approve", "c001", "--note", "looks sound", "--runs-dir", str(tmp_path))
    assert approved.returncode == 0 and "approve recorded" in approved.stdout

    # the round's other candidate waits on its own; c001's full job runs meanwhile
    wait_for(lambda: [e for e in events(run_dir) if e["type"] == "review_waiting"
                      and e["payload"]["candidate_id"] == "c002"], 180)
    assert archlab("review", run_dir.name, "--approve", "c002", "--runs-dir", str(tmp_path)).returncode == 0
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    log = events(run_dir)
    decision = next(e for e in log if e["type"] == "review_decision" and e["payload"]["candidate_id"] == "c001")
    assert decision["payload"]["action"] == "approve" and decision["payload"]["note"] == "looks sound"
    full = [e for e in log if e["type"] == "result" and e["payload"]["fidelity"] == "full"]
    assert full and full[0]["payload"]["candidate_id"] == "c001"
    assert log[-1]["type"] == "run_finished"
    assert "nothing waits" in archlab("review", run_dir.name, "--runs-dir", str(tmp_path)).stdout

    # the same recorded run replays, review decision included, and re-executes to the same numbers
    replayed = archlab("replay", run_dir.name, "--runs-dir", str(tmp_path))
    assert replayed.returncode == 0 and "replay matches" in replayed.stdout, replayed.stdout + replayed.stderr
    # every recorded job again, each in a cold sandbox (19 with the baselines' noise runs): minutes on a busy machine
    again = archlab("replay", run_dir.name, "--reexecute", "--runs-dir", str(tmp_path), timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 status changes" in again.stdout
    largest = float(again.stdout.split("largest difference ")[1].split(";")[0])
    assert largest < 1e-4                                # same seeds, same numbers (up to float noise)


def test_edited_code_in_review_is_checked_before_training(tmp_path):
    extra = {"ARCHLAB_REVIEW__POLICY": "always", "ARCHLAB_REVIEW__POLL_SECONDS": "0.2"}
    proc = start("run", "--rounds", "1", "--runs-dir", str(tmp_path), extra_env=extra)
    run_dir = wait_for(lambda: next((p for p in tmp_path.iterdir() if (p / "events.jsonl").exists()), None), 60)
    wait_for(lambda: [e for e in events(run_dir) if e["type"] == "review_waiting"
                      and e["payload"]["candidate_id"] == "c001"], 180)
    edited = tmp_path / "edited.py"
    edited.write_text((ROOT / "evaluators" / "baselines" / "softmax_attention.py").read_text()
                      .replace('"short_conv": 0', '"short_conv": 0, "edited_by": "a person"'))
    out = archlab("review", run_dir.name, "--edit", "c001", "--code", str(edited), "--note", "use plain softmax",
                  "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: [e for e in events(run_dir) if e["type"] == "review_waiting"
                      and e["payload"]["candidate_id"] == "c002"], 180)
    assert archlab("review", run_dir.name, "--approve", "c002", "--runs-dir", str(tmp_path)).returncode == 0
    text, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, text
    log = events(run_dir)
    order = [(e["type"], e["payload"].get("fidelity")) for e in log
             if e["type"] in ("review_decision", "job_started") and e["payload"].get("candidate_id") == "c001"]
    assert order[0] == ("job_started", "check") and order[1] == ("review_decision", "short")
    assert order[2] == ("job_started", "check")          # the edited module is checked again
    assert order[3] == ("job_started", "short")
    record = json.loads((run_dir / "candidates" / "c001" / "candidate.json").read_text())
    assert "edited_by" in record["source"] and record["origin"].endswith("+human")


@pytest.fixture(scope="module")
def six_round_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("replay-runs")
    out = archlab("run", "--rounds", "6", "--seed", "5", "--runs-dir", str(runs), timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return runs, only_run(runs)


def test_a_six_round_run_replays_every_decision(six_round_run):
    runs, run_dir = six_round_run
    out = archlab("replay", run_dir.name, "--runs-dir", str(runs))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "replay matches" in out.stdout


def test_an_edited_log_makes_replay_report_the_divergence(six_round_run, tmp_path):
    runs, run_dir = six_round_run
    log = events(run_dir)
    # a proposal's parent that is itself a proposal (a baseline's score also sets the noise floor, decided first)
    chosen = next(e["payload"] for e in log if e["type"] == "parents_selected" and e["payload"]["round"] >= 2
                  and not e["payload"]["explore"] and e["payload"]["parent_ids"][0].startswith("c"))
    parent = chosen["parent_ids"][0]
    # another machine receives the exported run, with the chosen parent's score tampered with
    archive = tmp_path / "run.tar.gz"
    assert archlab("export", run_dir.name, "--out", str(archive), "--runs-dir", str(runs)).returncode == 0
    copy_root = tmp_path / "copy"
    from archlab.replay import unpack
    copy = unpack(archive, copy_root)
    lines = []
    for line in (copy / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "result" and event["payload"]["candidate_id"] == parent \
                and event["payload"]["fidelity"] == "short":
            event["payload"]["result"]["metrics"]["accuracy"] = 0.0
            event["payload"]["metrics"]["accuracy"] = 0.0
        lines.append(json.dumps(event))
    (copy / "events.jsonl").write_text("\n".join(lines) + "\n")
    out = archlab("replay", str(copy))
    assert out.returncode == 1
    assert "replay diverged" in out.stdout and "parents_selected" in out.stdout.replace("\n", "")
    untouched = archlab("replay", str(archive))
    assert untouched.returncode == 0 and "replay matches" in untouched.stdout
