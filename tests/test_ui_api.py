"""The review page over HTTP: every route against a real `archlab ui` on loopback and real runs.

One real run is made for the whole module (`lab`): `review.policy = "always"`, stopped at the
gate before each proposal's first training job until the test decides through the page's own
form, exactly as a person would. A copy
taken while it waited is the "stopped, waiting for review" run; the original, once decided,
runs to its end. Other states (a torn log line, a run dir created a moment ago, a run deleted
while open, an LLM-written title holding a script) are copies or siblings of that run.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agents import scoring
from agents.recorder import load_candidates
from archlab.reviews import read_decision
from archlab.runstore import run_objective
from archlab.ui.security import is_loopback, needs_token
from tests.runs_support import archlab, events, wait_for
from tests.ui_support import Server, copy_run, csrf_of, payloads, start_review_run, waiting


pytestmark = pytest.mark.timeout(600)    # the module's run is set up in its first test's time


@dataclass
class Lab:
    server: Server
    client: httpx.Client
    runs: Path
    run_dir: Path          # the run decided through the page, finished
    snapshot: Path         # a copy taken while it waited for review (no process drives it)
    decided: list[str]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    runs = tmp_path_factory.mktemp("ui-runs")
    server = Server(runs)
    client = httpx.Client(base_url=server.base, timeout=30, follow_redirects=False)
    try:
        proc, run_dir = start_review_run(runs, "always", "--rounds", "1")
    except BaseException:
        client.close()
        server.stop()
        raise
    decided: list[str] = []
    try:
        wait_for(lambda: waiting(run_dir) or _ended(proc), 240)
        snapshot = copy_run(run_dir, "snapshot-waiting")
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            for cid in waiting(run_dir):
                if cid in decided:
                    continue
                page = client.get(f"/runs/{run_dir.name}/review")
                assert page.status_code == 200 and f'id="approve-{cid}"' in page.text
                answer = client.post(f"/runs/{run_dir.name}/review/{cid}",
                                     data={"csrf": csrf_of(page.text), "action": "approve", "fidelity": "short",
                                           "note": f"approved on the page: {cid}"})
                assert answer.status_code == 303, answer.text
                decided.append(cid)
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        yield Lab(server, client, runs, run_dir, snapshot, decided)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
        server.stop()


def _ended(proc) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"the run ended before it waited for review: {proc.stdout.read()[-3000:]}")


def _text(page: str) -> str:
    """What a reader sees: the tags taken out, the entities read back."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


# --- the run decided through the page ----------------------------------------------------------------------
def test_decisions_made_on_the_page_are_taken_up_by_the_running_run(lab):
    assert lab.decided, "the run never waited for review"
    taken = {p["candidate_id"]: p for p in payloads(lab.run_dir, "review_decision")}
    for cid in lab.decided:
        assert taken[cid]["action"] == "approve" and taken[cid]["note"] == f"approved on the page: {cid}"
    trained = {p["candidate_id"] for p in payloads(lab.run_dir, "result") if p["fidelity"] == "short"}
    assert set(lab.decided) <= trained                    # approved before training, then trained
    assert events(lab.run_dir)[-1]["type"] == "run_finished"


def test_runs_page_lists_each_run_with_its_state_and_the_best_the_cli_reports(lab):
    page = lab.client.get("/")
    assert page.status_code == 200
    rows = {r["id"]: r for r in lab.client.get("/api/runs").json()}
    assert rows[lab.run_dir.name]["state"] == "finished"
    assert rows["snapshot-waiting"]["state"] == "waiting for review" and rows["snapshot-waiting"]["waiting"] >= 1
    listed = archlab("runs", "--runs-dir", str(lab.runs)).stdout
    best = rows[lab.run_dir.name]["best"]
    line = next(line for line in listed.splitlines() if lab.run_dir.name in line)
    assert best["id"] in line                              # the page and `archlab runs` agree on the best
    assert f'href="/runs/{lab.run_dir.name}/candidates/{best["id"]}"' in page.text
    assert rows[lab.run_dir.name]["candidates"] == len(load_candidates(lab.run_dir))
    assert rows[lab.run_dir.name]["rounds"] == "1/1"


def test_run_page_draws_its_plots_from_the_run(lab):
    page = lab.client.get(f"/runs/{lab.run_dir.name}")
    assert page.status_code == 200
    html = page.text
    candidates = load_candidates(lab.run_dir)
    objective = run_objective(json.loads((lab.run_dir / "run.json").read_text()))
    counts = {kind: int(n) for kind, n in re.findall(r'data-plot="(\w+)" data-points="(\d+)"', html)}
    assert counts["lineage"] == len(candidates)
    assert counts["pareto"] == len(scoring.ranked(candidates, objective))
    assert counts["best"] >= 1
    # the best-so-far plot changes only on a lead beyond the noise: its last point is the best or one tied with it
    standing = scoring.standing(candidates, objective)
    contenders = [standing.best] + [s for s, _ in standing.tied]
    assert any(f"{s.candidate.id} ({s.origin}): {objective.metric} {s.value:.4g}" in html for s in contenders)
    assert standing.text().split(" (")[0] in _text(html)                    # the page says whether the lead is real
    assert html.count('<tr data-id="') == len(candidates)
    assert 'id="run-state">finished<' in html


def test_candidate_table_sorts_by_a_column_and_back(lab):
    candidates = load_candidates(lab.run_dir)
    objective = run_objective(json.loads((lab.run_dir / "run.json").read_text()))

    def order(query: str) -> list[str]:
        html = lab.client.get(f"/runs/{lab.run_dir.name}/panel?{query}").text
        return re.findall(r'<tr data-id="([^"]+)"', html)

    ranked = [s.candidate.id for s in scoring.ranked(candidates, objective)]
    assert order("sort=rank&order=asc")[:len(ranked)] == ranked
    assert order("sort=id&order=asc") == sorted(c.id for c in candidates)
    assert order("sort=id&order=desc") == sorted((c.id for c in candidates), reverse=True)
    best_first = order("sort=value&order=desc")
    assert best_first[0] == ranked[0] or scoring.score(
        next(c for c in candidates if c.id == best_first[0]), objective).quality == scoring.score(
        next(c for c in candidates if c.id == ranked[0]), objective).quality


def test_version_changes_when_the_log_grows_and_the_panel_follows(lab):
    copy = copy_run(lab.run_dir, "growing")
    first = lab.client.get(f"/runs/{copy.name}/version").json()["version"]
    assert lab.client.get(f"/runs/{copy.name}/version").json()["version"] == first     # stable while nothing moves
    before = lab.client.get(f"/runs/{copy.name}/panel").text
    from agents.event_types import RunStopped
    from agents.events import EventLog
    log = EventLog(copy / "events.jsonl")
    log.emit(RunStopped(reason="appended by the test"))
    log.close()
    assert lab.client.get(f"/runs/{copy.name}/version").json()["version"] != first
    after = lab.client.get(f"/runs/{copy.name}/panel").text
    assert 'id="run-state">finished<' in before and 'id="run-state">stopped<' in after


def test_candidate_page_shows_code_diff_metrics_curve_and_analysis(lab):
    cid = lab.decided[0]
    record = next(c for c in load_candidates(lab.run_dir) if c.id == cid)
    page = lab.client.get(f"/runs/{lab.run_dir.name}/candidates/{cid}")
    assert page.status_code == 200
    html = page.text
    text = _text(html)
    assert f"diff against {record.parent_ids[0]}" in text
    assert re.search(r'class="d-add">\+', html) and re.search(r'class="d-del">-', html)
    for fidelity in record.evaluations:
        assert f'data-fidelity="{fidelity}"' in html
    metric = run_objective(json.loads((lab.run_dir / "run.json").read_text())).metric
    assert f"{metric} {record.evaluations['short'].metrics[metric]:.4g}" in html
    curve = int(re.search(r'data-plot="curve" data-points="(\d+)"', html).group(1))
    trained = [r for f in ("short", "full")
               for r in (record.seeds.get(f) or ([record.evaluations[f]] if f in record.evaluations else []))]
    assert curve == sum(len(r.curve) for r in trained if len(r.curve) >= 2) > 0
    assert record.analysis[:60] in text


def test_candidate_files_are_served_as_text_and_traversal_is_refused(lab):
    copy = copy_run(lab.run_dir, "traversal")
    run = copy.name
    cid = lab.decided[0]
    status, headers, body = lab.server.raw("GET", f"/runs/{run}/candidates/{cid}/files/candidate.py")
    assert status == 200 and headers["content-type"].startswith("text/plain") and "def build_model" in body
    (copy / "candidates" / cid / "escape.txt").symlink_to(copy / "run.json")
    for path in (f"/runs/{run}/candidates/{cid}/files/../../../run.json",
                 f"/runs/{run}/candidates/{cid}/files/%2e%2e/%2e%2e/run.json",
                 f"/runs/{run}/candidates/{cid}/files/..%2f..%2frun.json",
                 f"/runs/{run}/candidates/{cid}/files//etc/passwd",
                 f"/runs/{run}/candidates/{cid}/files/escape.txt",
                 f"/runs/{run}/candidates/..%2f..%2f/files/run.json",
                 f"/runs/{run}/candidates/../files/run.json",
                 "/runs/../review", "/runs/..%2f..%2ftmp/review", f"/runs/{lab.runs}/review",
                 "/static/../app.py", "/static/%2e%2e/app.py"):
        status, _, body = lab.server.raw("GET", path)
        assert status == 404, (path, status)
        assert '"schema_version"' not in body and "root:" not in body and "create_app" not in body


def test_review_queue_shows_plan_hypothesis_code_and_diff(lab):
    page = lab.client.get("/runs/snapshot-waiting/review")
    assert page.status_code == 200
    html = page.text
    for cid in waiting(lab.snapshot):
        request = next(p for p in payloads(lab.snapshot, "review_waiting") if p["candidate_id"] == cid)
        assert f'id="review-{cid}"' in html and f'id="approve-{cid}"' in html
        text = _text(html)
        assert request["plan"]["title"] in text and request["plan"]["motivation"][:50] in text
    assert 'class="d-add">+' in html and "<textarea name=\"code\"" in html
    assert "no process is driving this run" in _text(html)


def test_approve_reject_and_edit_write_the_decision_files_the_run_reads(lab):
    copy = copy_run(lab.snapshot, "deciding")
    pending = [p for p in payloads(copy, "review_waiting") if p["candidate_id"] in waiting(copy)]
    assert pending
    html = lab.client.get(f"/runs/{copy.name}/review").text
    csrf = csrf_of(html)
    first = pending[0]
    answer = lab.client.post(f"/runs/{copy.name}/review/{first['candidate_id']}",
                             data={"csrf": csrf, "action": "reject", "note": "too close to its parent",
                                   "fidelity": first["fidelity"]})
    assert answer.status_code == 303
    decision = read_decision(copy, first)              # what the run reads when it next looks
    assert decision["action"] == "reject" and decision["note"] == "too close to its parent"
    again = lab.client.post(f"/runs/{copy.name}/review/{first['candidate_id']}",
                            data={"csrf": csrf, "action": "approve", "fidelity": first["fidelity"]})
    assert again.status_code == 409 and read_decision(copy, first)["action"] == "reject"
    shown = lab.client.get(answer.headers["location"]).text
    assert "reject recorded for " + first["candidate_id"] in _text(shown)

    other = copy_run(lab.snapshot, "editing")
    source = (other / "candidates" / first["candidate_id"] / "candidate.py").read_text()
    edited = source + "\n# edited on the review page\n"
    unchanged = lab.client.post(f"/runs/{other.name}/review/{first['candidate_id']}",
                                data={"csrf": csrf, "action": "edit", "code": source, "fidelity": first["fidelity"]})
    assert unchanged.status_code == 400 and read_decision(other, first) is None
    answer = lab.client.post(f"/runs/{other.name}/review/{first['candidate_id']}",
                             data={"csrf": csrf, "action": "edit", "code": edited, "title": "a person's title",
                                   "fidelity": first["fidelity"], "note": "edited"})
    assert answer.status_code == 303
    decision = read_decision(other, first)
    assert decision["action"] == "edit" and decision["source"] == edited
    assert decision["plan"] == {"title": "a person's title"}
    assert lab.client.post(f"/runs/{other.name}/review/nobody", data={"csrf": csrf, "action": "approve"}
                           ).status_code == 409
    assert lab.client.post(f"/runs/{other.name}/review/{first['candidate_id']}",
                           data={"csrf": csrf, "action": "launch"}).status_code == 400


def test_state_changing_requests_need_the_csrf_token_and_this_origin(lab):
    copy = copy_run(lab.snapshot, "csrf")
    request = next(p for p in payloads(copy, "review_waiting") if p["candidate_id"] in waiting(copy))
    url = f"/runs/{copy.name}/review/{request['candidate_id']}"
    csrf = csrf_of(lab.client.get(f"/runs/{copy.name}/review").text)
    form = {"action": "approve", "fidelity": request["fidelity"]}
    assert lab.client.post(url, data=form).status_code == 403                           # no token
    assert lab.client.post(url, data={**form, "csrf": "forged"}).status_code == 403
    assert lab.client.post(url, data={**form, "csrf": csrf}, headers={"Origin": "http://evil.example"}
                           ).status_code == 403
    assert lab.client.post(url, data={**form, "csrf": csrf}, headers={"Origin": "null"}).status_code == 403
    assert lab.client.post(url, data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
                           ).status_code == 403
    assert lab.client.post(url, json={**form, "csrf": csrf}).status_code == 415
    assert read_decision(copy, request) is None                                          # nothing was written
    assert lab.client.post(url, data={**form, "csrf": csrf}, headers={"Origin": lab.server.base}).status_code == 303
    assert read_decision(copy, request)["action"] == "approve"


def test_a_foreign_host_name_is_refused_on_loopback(lab):
    status, _, body = lab.server.raw("GET", "/", headers={"Host": f"evil.example:{lab.server.port}"})
    assert status == 403 and "loopback" in body
    assert lab.server.raw("GET", "/", headers={"Host": f"localhost:{lab.server.port}"})[0] == 200


def test_responses_forbid_inline_scripts_framing_and_sniffing(lab):
    headers = lab.client.get(f"/runs/{lab.run_dir.name}").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    html = lab.client.get(f"/runs/{lab.run_dir.name}").text
    assert "<script>" not in html and " style=" not in html and "http://" not in html.replace(lab.server.base, "")


def test_a_script_in_an_llm_written_title_is_shown_as_text(lab):
    copy = copy_run(lab.snapshot, "hostile")
    script = '<script>alert("owned")</script><img src=x onerror=alert(1)>'
    cid = waiting(copy)[0]
    path = copy / "candidates" / cid / "candidate.json"
    record = json.loads(path.read_text())
    record["title"], record["analysis"] = f"mixer {script}", f"analysis {script}"
    path.write_text(json.dumps(record))
    lines = []
    for line in (copy / "events.jsonl").read_text().splitlines(keepends=True):
        event = json.loads(line) if line.endswith("\n") else None
        if event and event["type"] == "review_waiting" and event["payload"]["candidate_id"] == cid:
            event["payload"]["plan"]["title"] = f"plan {script}"
            event["payload"]["plan"]["motivation"] = f"because {script}"
            line = json.dumps(event) + "\n"
        lines.append(line)
    (copy / "events.jsonl").write_text("".join(lines))
    for url in (f"/runs/{copy.name}", f"/runs/{copy.name}/panel", f"/runs/{copy.name}/candidates/{cid}",
                f"/runs/{copy.name}/review", f"/runs/{copy.name}/replay?step=0"):
        html = lab.client.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in lab.client.get(f"/runs/{copy.name}/review").text
    assert "mixer &lt;script&gt;" in lab.client.get(f"/runs/{copy.name}/candidates/{cid}").text


# --- a run being written ---------------------------------------------------------------------------------
def test_a_half_written_last_event_line_is_left_out(lab):
    copy = copy_run(lab.run_dir, "torn")
    complete = len(events(copy))
    with (copy / "events.jsonl").open("a") as log:
        log.write('{"schema_version": 2, "seq": 100000, "time": 1.0, "type": "resu')
    for url in (f"/runs/{copy.name}", f"/runs/{copy.name}/panel", f"/runs/{copy.name}/review",
                f"/runs/{copy.name}/replay?step=100000", f"/runs/{copy.name}/version", "/"):
        assert lab.client.get(url).status_code == 200, url
    assert f"<dt>events</dt><dd>{complete}</dd>" in lab.client.get(f"/runs/{copy.name}").text


def test_a_run_directory_created_a_moment_ago_shows_as_starting(lab):
    fresh = lab.runs / "20990101-000000-beef"
    fresh.mkdir()
    half = lab.runs / "20990101-000001-cafe"
    half.mkdir()
    (half / "run.json").write_text('{"schema_version": 1, "run_id": "2099')      # being written
    rows = {r["id"]: r for r in lab.client.get("/api/runs").json()}
    assert rows[fresh.name]["state"] == "starting" and rows[half.name]["state"] == "starting"
    for run in (fresh.name, half.name):
        page = lab.client.get(f"/runs/{run}")
        assert page.status_code == 200 and "created a moment ago" in page.text
        for url in (f"/runs/{run}/panel", f"/runs/{run}/review", f"/runs/{run}/replay", f"/runs/{run}/knowledge?q=x",
                    f"/runs/{run}/version", f"/compare?run={run}"):
            assert lab.client.get(url).status_code == 200, url
        assert lab.client.get(f"/runs/{run}/candidates/c001").status_code == 404


def test_a_run_deleted_while_open_is_a_404_that_says_so(lab):
    copy = copy_run(lab.run_dir, "doomed")
    assert lab.client.get(f"/runs/{copy.name}").status_code == 200
    shutil.rmtree(copy)
    version = lab.client.get(f"/runs/{copy.name}/version")
    assert version.status_code == 404 and version.json()["state"] == "deleted"
    for url in (f"/runs/{copy.name}", f"/runs/{copy.name}/panel", f"/runs/{copy.name}/review",
                f"/runs/{copy.name}/candidates/c001", f"/runs/{copy.name}/candidates/c001/files/candidate.py"):
        page = lab.client.get(url)
        assert page.status_code == 404 and "no run" in page.text, url
    csrf = csrf_of(lab.client.get("/runs/snapshot-waiting/review").text)
    assert lab.client.post(f"/runs/{copy.name}/review/c001", data={"csrf": csrf, "action": "approve"}
                           ).status_code == 404
    assert lab.client.get("/").status_code == 200


# --- knowledge, replay, compare --------------------------------------------------------------------------
def test_knowledge_search_finds_the_runs_findings_and_principles(lab):
    findings = payloads(lab.run_dir, "finding")
    assert findings, "the run stored no finding"
    target = findings[0]
    page = lab.client.get(f"/runs/{lab.run_dir.name}/knowledge", params={"q": target["text"]})
    assert page.status_code == 200
    hits = re.search(r'<ol class="hits" id="finding-hits">(.*?)</ol>', page.text, re.S).group(1)
    first = re.search(r"<li>.*?</li>", hits, re.S).group(0)
    assert target["id"] in first                        # a finding is nearest to its own words
    principles = re.search(r'id="principle-hits">(.*?)</ol>', page.text, re.S).group(1)
    assert principles.count("<li>") >= 1
    assert f"All findings ({len(findings)})" in page.text


def test_replay_steps_through_the_events_with_their_decisions(lab):
    log = events(lab.run_dir)
    from agents.event_types import decision_fields
    step = next(i for i, e in enumerate(log) if decision_fields(e["type"]))
    page = lab.client.get(f"/runs/{lab.run_dir.name}/replay", params={"step": step}).text
    assert f'data-type="{log[step]["type"]}"' in page and "Decision:" in page
    assert f"event {step + 1} of {len(log)}" in page
    follow = re.search(r'href="\?step=(\d+)" id="next-decision"', page)
    nxt = int(follow.group(1))
    assert nxt > step and decision_fields(log[nxt]["type"])
    plain = next(i for i, e in enumerate(log) if not decision_fields(e["type"]))
    assert "not a decision" in lab.client.get(f"/runs/{lab.run_dir.name}/replay", params={"step": plain}).text
    last = lab.client.get(f"/runs/{lab.run_dir.name}/replay", params={"step": 10 ** 6}).text
    assert f"event {len(log)} of {len(log)}" in last
    assert lab.client.get(f"/runs/{lab.run_dir.name}/replay", params={"step": "x"}).status_code == 200


def test_compare_draws_one_best_so_far_curve_per_run(lab):
    page = lab.client.get("/compare", params=[("run", lab.run_dir.name), ("run", "snapshot-waiting"),
                                              ("run", "no-such-run")])
    assert page.status_code == 200
    svg = re.search(r'<svg class="plot" data-plot="compare".*?</svg>', page.text, re.S).group(0)
    assert svg.count('class="legend"') == 2 and "no run no-such-run" in page.text
    assert svg.count("<polyline") == 2


# --- exposed: the token ------------------------------------------------------------------------------------
def test_non_loopback_addresses_need_a_token():
    assert not needs_token("127.0.0.1") and not needs_token("::1") and not needs_token("localhost")
    assert needs_token("0.0.0.0") and needs_token("192.168.1.20") and needs_token("box.example.org")
    assert needs_token("127.0.0.1", asked=True)
    assert is_loopback("[::1]") and not is_loopback("::")


def test_with_a_token_every_request_needs_it(lab):
    server = Server(lab.runs, "--token", extra_env={"ARCHLAB_UI_TOKEN": ""})
    try:
        assert server.token and len(server.token) >= 24
        client = httpx.Client(base_url=server.base, timeout=30, follow_redirects=False)
        for path in ("/", f"/runs/{lab.run_dir.name}", "/api/runs", "/static/style.css", "/runs/snapshot-waiting/review"):
            assert client.get(path).status_code == 401, path
        assert client.get("/", params={"token": "guess"}).status_code == 401
        assert client.post("/runs/snapshot-waiting/review/c001", data={"action": "approve"}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": f"Bearer {server.token}"}).status_code == 200
        entry = client.get(f"/runs/{lab.run_dir.name}", params={"token": server.token, "sort": "id"})
        assert entry.status_code == 303 and "token" not in entry.headers["location"]
        assert entry.headers["location"] == f"/runs/{lab.run_dir.name}?sort=id"
        cookie = entry.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get(entry.headers["location"]).status_code == 200          # the cookie from now on
        page = client.get("/runs/snapshot-waiting/review").text
        copy = copy_run(lab.snapshot, "tokened")
        request = next(p for p in payloads(copy, "review_waiting") if p["candidate_id"] in waiting(copy))
        assert client.post(f"/runs/{copy.name}/review/{request['candidate_id']}",
                           data={"csrf": csrf_of(page), "action": "approve", "fidelity": request["fidelity"]}
                           ).status_code == 303
        client.close()
    finally:
        server.stop()


def test_a_token_from_the_setting_is_used_and_not_printed(lab):
    server = Server(lab.runs, "--token", extra_env={"ARCHLAB_UI_TOKEN": "a-token-from-the-environment"})
    try:
        assert server.token is None and "a-token-from-the-environment" not in server.url
        assert httpx.get(f"{server.base}/api/runs").status_code == 401
        assert httpx.get(f"{server.base}/api/runs",
                         headers={"Authorization": "Bearer a-token-from-the-environment"}).status_code == 200
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error(lab):
    out = archlab("ui", "--runs-dir", str(lab.runs), "--port", str(lab.server.port), timeout=60)
    assert out.returncode == 2 and "cannot listen" in out.stderr and "--port" in out.stderr


def test_unknown_routes_are_404_pages(lab):
    page = lab.client.get("/nowhere")
    assert page.status_code == 404 and "<h1>404</h1>" in page.text
