"""A whole 2-round run through the real CLI with `--llm openai`, against the strict fake endpoint on loopback.

The fake serves two plans, two modules (the softmax baseline made narrower) and two analyses,
and fails the test if the run asks for anything else or leaves an answer unused. The run must
evaluate both candidates, log every call with tokens and cost, keep the key out of every file,
and replay from its log with no model at all.
"""
from __future__ import annotations

import json

import pytest

from agents.events import read_events
from agents.llm.fake import Answer, FakeEndpoint
from agents.llm.usage import usage_by_role
from tests.llm_support import ANALYSIS, KEY, PLAN, fenced, module
from tests.runs_support import archlab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PRICES = {"planner-m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
          "coder-m": {"input_per_mtok": 3.0, "output_per_mtok": 6.0},
          "analyst-m": {"input_per_mtok": 0.5, "output_per_mtok": 1.0}}
SECOND_PLAN = {"title": "fewer attention heads", "hypothesis": "With only four key-value pairs, two wider heads "
               "should match keys as well as four narrow ones while each head sees more of the embedding.",
               "change_kind": "heads", "change": "n_heads 4 -> 2", "expected_effect": "accuracy unchanged"}


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    answers = {
        "planner-m": [Answer.json(PLAN, expect="Literature principles"),
                      Answer.json(SECOND_PLAN, expect="- c001 from")],          # round 2 sees round 1 as tried
        "coder-m": [Answer.text(fenced(module(48), "Here is the narrower model.")),
                    Answer.text(fenced(module(40).replace('"n_heads": 4', '"n_heads": 2')))],
        "analyst-m": [Answer.json(ANALYSIS, expect="# The candidate: c001"),
                      Answer.json(ANALYSIS, expect="# The candidate: c002")],
    }
    with FakeEndpoint(answers) as fake:
        env = {"ARCHLAB_LLM__BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "ARCHLAB_LLM__PLANNER_MODEL": "planner-m",
               "ARCHLAB_LLM__CODER_MODEL": "coder-m", "ARCHLAB_LLM__ANALYST_MODEL": "analyst-m",
               "ARCHLAB_LLM__PRICES": json.dumps(PRICES), "ARCHLAB_LLM__TIMEOUT_SECONDS": "30",
               "ARCHLAB_LOOP__BATCH": "1", "ARCHLAB_LOOP__LOOKAHEAD": "0"}  # one at a time: c002's plan sees c001
        proc = archlab("run", "--task", "mqar", "--rounds", "2", "--llm", "openai", "--short-steps", "30",
                       "--runs-dir", str(runs), extra_env=env, timeout=540)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in runs.iterdir() if (p / "run.json").is_file())
    return run_dir, proc.stdout


def test_both_candidates_were_written_by_the_model_and_evaluated(llm_run):
    run_dir, out = llm_run
    for cid, width in (("c001", 48), ("c002", 40)):
        record = json.loads((run_dir / "candidates" / cid / "candidate.json").read_text())
        assert record["status"] == "evaluated" and record["origin"] == "openai"
        assert f'"d_model": {width}' in record["source"]
        assert record["evaluations"]["short"]["metrics"]["accuracy"] >= 0
        assert record["analysis"].startswith(ANALYSIS["summary"]) and "Measured: " + cid in record["analysis"]
    assert "c001" in out and "c002" in out


def test_every_call_is_an_event_with_tokens_and_cost(llm_run):
    run_dir, _ = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    requests = [e.payload for e in events if e.type == "llm_request"]
    responses = [e.payload for e in events if e.type == "llm_response"]
    assert [r["role"] for r in requests] == ["planner", "coder", "analyst"] * 2
    assert len(responses) == 6 and all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in responses)
    assert all(r["cost_usd"] > 0 and r["priced"] for r in responses)
    usage = usage_by_role(events)
    assert {role: row["calls"] for role, row in usage.items()} == {"planner": 2, "coder": 2, "analyst": 2}
    assert sum(row["cost_usd"] for row in usage.values()) == pytest.approx(sum(r["cost_usd"] for r in responses))
    plans = [e.payload for e in events if e.type == "plan"]
    assert [p["change"] for p in plans] == ["short_conv", "heads"]
    assert len([e for e in events if e.type == "principles_retrieved"]) == 2
    findings = [e.payload for e in events if e.type == "finding"]
    assert len(findings) == 2 and all("delta_accuracy" in f["evidence"] for f in findings)


def test_the_key_is_in_no_file_of_the_run(llm_run):
    run_dir, out = llm_run
    assert KEY not in out
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    settings = json.loads((run_dir / "run.json").read_text())["settings"]["llm"]
    assert settings["api_key_env"] == "OPENAI_API_KEY" and settings["base_url"].startswith("http://127.0.0.1:")


def test_the_run_replays_with_no_model(llm_run):
    run_dir, _ = llm_run
    proc = archlab("replay", run_dir.name, "--runs-dir", str(run_dir.parent))
    assert proc.returncode == 0 and "replay matches" in proc.stdout, proc.stdout + proc.stderr


def test_an_endpoint_that_stays_down_stops_the_run_with_a_message(tmp_path):
    with FakeEndpoint({"planner-m": [Answer.error(502), Answer.error(502)]}) as fake:
        env = {"ARCHLAB_LLM__BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "ARCHLAB_LLM__PLANNER_MODEL": "planner-m",
               "ARCHLAB_LLM__CODER_MODEL": "planner-m", "ARCHLAB_LLM__ANALYST_MODEL": "planner-m",
               "ARCHLAB_LLM__MAX_RETRIES": "1", "ARCHLAB_LLM__BACKOFF_SECONDS": "0.01",
               "ARCHLAB_LOOP__BATCH": "1"}      # one branch: its two failed attempts are the whole story
        proc = archlab("run", "--rounds", "1", "--llm", "openai", "--short-steps", "10", "--runs-dir", str(tmp_path),
                       extra_env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "error: the planner model 'planner-m'" in message and "failed 2 times" in message
    assert "Traceback" not in proc.stderr and KEY not in proc.stdout + proc.stderr
    run_dir = next(p for p in tmp_path.iterdir() if (p / "run.json").is_file())
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1].type == "run_failed" and "LLMUnavailable" in events[-1].payload["error"]
    assert [e.payload["kind"] for e in events if e.type == "llm_error"] == ["server", "server"]


def test_show_reports_tokens_and_cost_per_role(llm_run):
    run_dir, run_out = llm_run
    out = archlab("show", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "LLM usage" in out.stdout and "LLM usage" in run_out
    events, _ = read_events(run_dir / "events.jsonl")
    usage = usage_by_role(events)
    for role in ("planner", "coder", "analyst"):
        line = next(l for l in out.stdout.splitlines() if f" {role} " in l)
        assert f"{usage[role]['input_tokens']:,}" in line and f"{usage[role]['cost_usd']:.4f}" in line
