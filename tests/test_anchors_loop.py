"""The loop on `lm` with its downstream suite: whole-suite results at short until enough exist, then an anchor set
fitted on them (a `suite_anchors` event with its rank agreement, error and reliability), later short jobs scoring
only those items, a verdict the anchors cannot make reliably taken again on the whole suite, the page and `show`
reporting it, and replay fitting the same set from the log."""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from archlab.ui.app import create_app
from tests.runs_support import archlab, events, only_run

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("suite-runs")
    config = runs / "lab.toml"
    # the objective ranks by the suite, so verdicts rest on it; every one short of certain goes to the whole suite
    config.write_text('task = "lm"\n[objective]\nmetric = "suite_score"\n[suite]\nfit_after = 4\nrefit_every = 50\n'
                      'items = 28\nmin_reliability = 0.0\ndraws = 10\ndecision_reliability = 1.0\n')
    out = archlab("run", "--config", str(config), "--rounds", "2", "--short-steps", "5", "--runs-dir", str(runs),
                  "--llm", "offline", "--sandbox", "process", "--random-pool", "1", "--promote", "0", timeout=800,
                  extra_env={"ARCHLAB_TASK_OPTIONS": json.dumps({"heldout_windows": 16, "suite_items": 25})})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return runs, only_run(runs), out.stdout


def test_anchors_are_fitted_on_whole_suite_results_and_later_short_jobs_score_only_them(suite_run):
    _, run_dir, _ = suite_run
    log = events(run_dir)
    fits = [e["payload"] for e in log if e["type"] == "suite_anchors"]
    assert len(fits) == 1, [e["type"] for e in log]
    fit = fits[0]
    assert fit["sources"] >= 4 and fit["suite_items"] == 25 * 7 and len(fit["items"]) <= 28 + 7
    assert fit["used"] and -1 <= fit["tau"] <= 1 and 0 <= fit["error"] < 1 and 0 <= fit["reliability"] <= 1
    after = [i for i, e in enumerate(log) if e["type"] == "suite_anchors"][0]
    started = [e["payload"] for e in log[after:] if e["type"] == "job_started" and e["payload"]["fidelity"] == "short"
               and "-whole-" not in e["payload"]["job_id"]]
    assert started and all(s["items"] == fit["id"] for s in started)
    results = {e["payload"]["job_id"]: e["payload"] for e in log if e["type"] == "result"}
    for s in started:
        result = results[s["job_id"]]
        if result["status"] == "ok":
            assert result["metrics"]["suite_items"] == len(fit["items"])
            assert result["result"]["items"]["items"] == sorted(fit["items"])
    before = [e["payload"] for e in log[:after] if e["type"] == "result" and e["payload"]["fidelity"] == "short"
              and e["payload"]["status"] == "ok"]
    assert all(r["metrics"]["suite_items"] == 25 * 7 for r in before)


def test_show_and_the_page_report_the_suite_and_the_anchor_set(suite_run):
    runs, run_dir, _ = suite_run
    shown = archlab("show", run_dir.name, "--runs-dir", str(runs))
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())
    assert "downstream suite" in flat and "anchor set" in flat and "Kendall tau" in flat and "reliability" in flat
    client = TestClient(create_app(runs), base_url="http://127.0.0.1")
    page = client.get(f"/runs/{run_dir.name}").text
    assert 'id="suite"' in page and "recall" in page and 'data-used="yes"' in page


def test_replay_fits_the_same_anchor_set(suite_run):
    runs, run_dir, _ = suite_run
    out = archlab("replay", run_dir.name, "--runs-dir", str(runs))
    assert out.returncode == 0 and "replay matches" in out.stdout, out.stdout + out.stderr
    replayed = sorted((run_dir / "replays").iterdir())[-1]
    fitted = [e["payload"] for e in events(replayed) if e["type"] == "suite_anchors"]
    assert fitted == [e["payload"] for e in events(run_dir) if e["type"] == "suite_anchors"]
    assert json.loads((run_dir / "run.json").read_text())["settings"]["suite"]["fit_after"] == 4


def test_a_verdict_the_anchors_cannot_make_reliably_is_taken_on_the_whole_suite(suite_run):
    _, run_dir, _ = suite_run
    log = events(run_dir)
    decisions = [e["payload"] for e in log if e["type"] == "suite_decision"]
    assert decisions, "no short verdict was taken on the anchor set"
    results = {e["payload"]["job_id"]: e["payload"] for e in log if e["type"] == "result"}
    for d in decisions:
        assert d["escalated"] == (d["reliability"] is None or d["reliability"] < 1.0), d
        whole = results.get(f"{d['candidate_id']}-short-whole-0")
        if d["escalated"]:
            assert whole is not None and whole["metrics"]["suite_items"] == 25 * 7, d
        else:
            assert whole is None
    record = json.loads((run_dir / "candidates" / decisions[0]["candidate_id"] / "candidate.json").read_text())
    used = record["evaluations"]["short"]["job_id"]
    assert used.endswith("-short-whole-0") == decisions[0]["escalated"]
