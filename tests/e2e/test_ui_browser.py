"""The review page in a real headless Chromium (Debian's, driven by Playwright), against a real run.

One `archlab run` with `review.policy = "always"` waits before its proposal's first training
job; the page shows it with its plots drawn from data, a person approves it with one click, and
the page, without being reloaded, shows the run take the decision up, train the proposal and
finish. Screenshots go to the test's temporary directory.

Needs `/usr/bin/chromium` (`bash .ci/browser-setup.sh`) and the `playwright` package (the dev
extra); `playwright install` is never run: no browser is downloaded. Outside CI a missing
browser skips these tests and says why; under CI=true it fails them.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.runs_support import events, wait_for
from tests.ui_support import Server, payloads, start_review_run, waiting

# the run and the browser share the module; under a loaded CI machine the run alone can take minutes
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _browser_or_skip():
    problem = ""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        problem = f"no Chromium at {CHROMIUM}; `bash .ci/browser-setup.sh` installs Debian's"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = problem or "the playwright package is missing; `make install` installs it (the dev extra)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"under CI the browser tests must run: {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    sync_playwright = _browser_or_skip()
    root = tmp_path_factory.mktemp("ui-browser")
    runs = root / "runs"
    runs.mkdir()
    server = Server(runs)
    try:
        proc, run_dir = start_review_run(runs, "always", "--rounds", "1", "--batch", "1")
    except BaseException:
        server.stop()
        raise
    try:
        wait_for(lambda: waiting(run_dir) or proc.poll() is not None, 240)
        assert proc.poll() is None, f"the run ended before it waited for review: {proc.stdout.read()[-3000:]}"
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(root / "profile"), executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                headless=True, args=ARGS, viewport={"width": 1280, "height": 1000})
            problems: list[str] = []
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            yield {"page": page, "server": server, "run_dir": run_dir, "proc": proc, "problems": problems}
            context.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()


def test_run_page_renders_its_plots_with_data(lab, tmp_path):
    page, run_dir = lab["page"], lab["run_dir"]
    page.goto(f"{lab['server'].base}/runs/{run_dir.name}")
    scored = {p["candidate_id"] for p in payloads(run_dir, "result") if p["fidelity"] == "short" and p["status"] == "ok"}
    for plot, least in (("best", 1), ("pareto", len(scored)), ("lineage", len(scored))):
        points = page.locator(f'svg[data-plot="{plot}"] .point, svg[data-plot="{plot}"] .node')
        assert points.count() >= least, plot
        box = page.locator(f'svg[data-plot="{plot}"]').bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, plot      # drawn, not collapsed
    assert page.locator('svg[data-plot="lineage"] .node[data-status="baseline"]').count() == 3
    assert page.locator("#candidates tbody tr").count() == len(list((run_dir / "candidates").iterdir()))
    page.locator('th a.sort:has-text("id")').click()                         # the table sorts
    ids = page.locator("#candidates tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == sorted(ids)
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    assert not lab["problems"], lab["problems"]          # no script error, nothing the page's CSP refused


def test_approve_a_waiting_proposal_with_one_click_and_see_the_run_continue(lab, tmp_path):
    page, run_dir, proc = lab["page"], lab["run_dir"], lab["proc"]
    cid = waiting(run_dir)[0]
    page.goto(f"{lab['server'].base}/runs/{run_dir.name}/review")
    assert page.locator(f"#review-{cid} pre.diff .d-add").count() > 0          # the code's diff against its parent
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    page.locator(f"#approve-{cid}").click()                                    # one click
    assert f"approve recorded for {cid}" in page.locator("#flash").inner_text()
    # the run page follows the run without a reload: the proposal trains, the run finishes
    page.goto(f"{lab['server'].base}/runs/{run_dir.name}")
    page.locator(f'[data-job="{cid}-short-0"]').first.wait_for(timeout=180_000)
    page.locator('#run-state:text-is("finished")').wait_for(timeout=180_000)   # the page's CSP allows no eval
    assert int(page.locator("body").get_attribute("data-refreshed") or 0) >= 1   # swapped in, not reloaded
    page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
    page.goto(f"{lab['server'].base}/runs/{run_dir.name}/review")
    assert page.locator(f'#decisions li[data-candidate="{cid}"]').inner_text().startswith(f"{cid} before short")
    assert page.locator("#queue-empty").count() == 1
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    decision = next(p for p in payloads(run_dir, "review_decision") if p["candidate_id"] == cid)
    assert decision["action"] == "approve" and decision["fidelity"] == "short"
    assert any(p["candidate_id"] == cid and p["fidelity"] == "short" for p in payloads(run_dir, "result"))
    assert events(run_dir)[-1]["type"] == "run_finished"
    assert (tmp_path / "review.png").stat().st_size > 10_000 and (tmp_path / "finished.png").stat().st_size > 10_000
    assert not lab["problems"], lab["problems"]
