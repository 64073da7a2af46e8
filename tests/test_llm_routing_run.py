"""Several planner models on two loopback servers, and an LLM budget, through the real CLI.

A 3-round run (one proposal at a time) with `planner_model = ["planner-m", "planner-b"]`,
planner-b served by a second endpoint with a key of its own: both models are tried, each
candidate's choice is logged with the numbers it rests on, each server gets only its own
model's requests, `show` reports each model's cost, and `replay` makes every choice again
from the log. Then a run whose LLM budget is spent by its first plan: that candidate is
still written, trained and analysed, and no second proposal is made.
"""
from __future__ import annotations

import json

import pytest

from agents.events import read_events
from agents.llm.fake import Answer, FakeEndpoint
from agents.llm.usage import usage_by_model
from tests.llm_support import ANALYSIS, KEY, PLAN, fenced, module
from tests.runs_support import archlab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SECOND_KEY = "sk-second-endpoint-5e4d3c2b1a"
PRICES = {"planner-m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
          "planner-b": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
          "coder-m": {"input_per_mtok": 3.0, "output_per_mtok": 6.0},
          "analyst-m": {"input_per_mtok": 0.5, "output_per_mtok": 1.0}}
HEADS = {"title": "fewer attention heads", "hypothesis": "With only four key-value pairs, two wider heads should "
         "match keys as well as four narrow ones while each head sees more of the embedding.",
         "change_kind": "heads", "change": "n_heads 4 -> 2", "expected_effect": "accuracy unchanged"}
WIDER = {"title": "a wider residual stream", "hypothesis": "A wider model stores the bindings of all four pairs in "
         "separate directions, so recall of the queried value gets more reliable.",
         "change_kind": "width_depth", "change": "d_model 64 -> 80", "expected_effect": "accuracy up a little"}


def env(first: FakeEndpoint, **over: str) -> dict[str, str]:
    return {"ARCHLAB_LLM__BASE_URL": first.url, "OPENAI_API_KEY": KEY, "ARCHLAB_LLM__CODER_MODEL": "coder-m",
            "ARCHLAB_LLM__ANALYST_MODEL": "analyst-m", "ARCHLAB_LLM__PLANNER_MODEL": "planner-m",
            "ARCHLAB_LLM__PRICES": json.dumps(PRICES), "ARCHLAB_LLM__TIMEOUT_SECONDS": "30",
            "ARCHLAB_LOOP__BATCH": "1", "ARCHLAB_LOOP__LOOKAHEAD": "0", **over}


@pytest.fixture(scope="module")
def routed_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    # the third proposal goes to whichever planner the router prefers by then: both have an answer ready
    first = FakeEndpoint({"planner-m": [Answer.json(PLAN), Answer.json(WIDER)],
                          "coder-m": [Answer.text(fenced(module(d)))for d in (48, 40, 56)],
                          "analyst-m": [Answer.json(ANALYSIS) for _ in range(3)]}, spare={"planner-m"})
    second = FakeEndpoint({"planner-b": [Answer.json(HEADS), Answer.json(WIDER)]}, spare={"planner-b"})
    with first, second:
        extra = env(first, ARCHLAB_LLM__PLANNER_MODEL='["planner-m", "planner-b"]', SECOND_KEY=SECOND_KEY,
                    ARCHLAB_LLM__ENDPOINTS=json.dumps({"planner-b": {"base_url": second.url,
                                                                     "api_key_env": "SECOND_KEY"}}))
        proc = archlab("run", "--task", "mqar", "--rounds", "3", "--llm", "openai", "--short-steps", "30",
                       "--runs-dir", str(runs), extra_env=extra, timeout=840)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in runs.iterdir() if (p / "run.json").is_file())
    return run_dir, proc.stdout, first, second


def test_each_model_is_tried_and_each_choice_is_logged_with_its_numbers(routed_run):
    run_dir, _, first, second = routed_run
    events, _ = read_events(run_dir / "events.jsonl")
    chosen = {e.data.candidate_id: e.data for e in events if e.type == "models_chosen"}
    assert list(chosen) == ["c001", "c002", "c003"]
    assert chosen["c001"].models == {"planner": "planner-m"}          # not tried yet: in the order listed
    assert chosen["c002"].models == {"planner": "planner-b"}
    third = chosen["c003"]
    bounds = {a.model: a.bound for a in third.arms}
    assert all(a.pulls == 1 and a.unit == "usd" and a.cost > 0 for a in third.arms)
    assert third.models["planner"] == max(bounds, key=lambda m: (bounds[m], -next(a.cost for a in third.arms
                                                                                 if a.model == m)))
    for cid, data in chosen.items():
        record = json.loads((run_dir / "candidates" / cid / "candidate.json").read_text())
        assert record["models"] == data.models and record["status"] == "evaluated"
    # each server saw only its own model; the second one with its own key
    assert {r.model for r in second.received} == {"planner-b"}
    assert all(r.authorization == f"Bearer {SECOND_KEY}" for r in second.received)
    assert "planner-b" not in {r.model for r in first.received}


def test_every_call_names_the_candidate_it_served(routed_run):
    run_dir, _, _, _ = routed_run
    events, _ = read_events(run_dir / "events.jsonl")
    served = {(e.data.role, e.data.candidate_id) for e in events if e.type == "llm_response"}
    assert served == {(role, cid) for role in ("planner", "coder", "analyst") for cid in ("c001", "c002", "c003")}
    for name in ("events.jsonl", "run.json"):
        text = (run_dir / name).read_text()
        assert SECOND_KEY not in text and KEY not in text


def test_show_reports_the_cost_of_each_planner_model(routed_run):
    run_dir, _, _, _ = routed_run
    out = archlab("show", str(run_dir))
    assert out.returncode == 0, out.stderr
    events, _ = read_events(run_dir / "events.jsonl")
    for (role, model), row in usage_by_model(events).items():
        if role == "planner":
            line = next(line for line in out.stdout.splitlines() if f" {model} " in line)
            assert f"{row['cost_usd']:.4f}" in line


def test_replay_makes_every_choice_again(routed_run):
    run_dir, _, _, _ = routed_run
    proc = archlab("replay", run_dir.name, "--runs-dir", str(run_dir.parent))
    assert proc.returncode == 0 and "replay matches" in proc.stdout, proc.stdout + proc.stderr
    replayed = sorted((run_dir / "replays").iterdir())[-1]
    events, _ = read_events(replayed / "events.jsonl")
    assert len([e for e in events if e.type == "models_chosen"]) == 3      # made again, not copied


def test_replay_notices_a_choice_that_the_numbers_do_not_support(routed_run, tmp_path):
    run_dir, _, _, _ = routed_run
    tampered = tmp_path / run_dir.name
    tampered.mkdir()
    for name in ("run.json", "candidates"):
        source = run_dir / name
        if source.is_dir():
            import shutil
            shutil.copytree(source, tampered / name)
        else:
            (tampered / name).write_bytes(source.read_bytes())
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        event = json.loads(line)
        if event["type"] == "models_chosen" and event["payload"]["candidate_id"] == "c002":
            event["payload"]["models"] = {"planner": "planner-m"}              # as if the router had chosen again
        out.append(json.dumps(event))
    (tampered / "events.jsonl").write_text("\n".join(out) + "\n")
    proc = archlab("replay", tampered.name, "--runs-dir", str(tmp_path))
    assert proc.returncode == 1 and "models_chosen" in proc.stdout, proc.stdout + proc.stderr


def test_a_spent_llm_budget_stops_new_proposals_and_the_one_in_flight_finishes(tmp_path):
    answers = {"planner-m": [Answer.json(PLAN)], "coder-m": [Answer.text(fenced(module(48)))],
               "analyst-m": [Answer.json(ANALYSIS)]}
    with FakeEndpoint(answers) as fake:             # strict: a second plan asked for fails the test
        proc = archlab("run", "--task", "mqar", "--rounds", "3", "--llm", "openai", "--short-steps", "30",
                       "--runs-dir", str(tmp_path), extra_env=env(fake, ARCHLAB_BUDGET__LLM_COST_USD="0.000001"),
                       timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next(p for p in tmp_path.iterdir() if (p / "run.json").is_file())
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e.data.candidate_id for e in events if e.type == "plan"] == ["c001"]
    record = json.loads((run_dir / "candidates" / "c001" / "candidate.json").read_text())
    assert record["status"] == "evaluated" and record["analysis"].startswith(ANALYSIS["summary"])
    spent = [e.data for e in events if e.type == "budget_exhausted"]
    assert spent and "LLM budget" in spent[0].reason and "LLM budget" in proc.stdout


def test_the_review_page_says_which_models_served_a_candidate(routed_run):
    from starlette.testclient import TestClient

    from archlab.ui.app import create_app
    run_dir, _, _, _ = routed_run
    client = TestClient(create_app(run_dir.parent), base_url="http://127.0.0.1")
    page = client.get(f"/runs/{run_dir.name}/candidates/c002")
    assert page.status_code == 200 and "planner: planner-b" in page.text
    assert client.get(f"/api/runs/{run_dir.name}/candidates/c001").json()["models"] == {"planner": "planner-m"}
