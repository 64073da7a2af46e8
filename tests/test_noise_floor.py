"""A difference inside the run's noise floor is never called "better": not by `archlab show`, the review page,
its JSON, the analysts, or the run's best.

The floor is the seed-to-seed spread of the baselines (and random references), pooled, as the
half-width of the 95% interval of a difference between two single runs (`agents.scoring`).
Unit tests build records whose baselines were run twice at `short` with a spread that makes
the floor 0.02, then a child 0.012 above its parent (inside) or 0.030 above (beyond), and
read what each reader prints. The last tests drive a tiny real run: the floor is measured in
round 0, logged as a `noise_floor` event, and `archlab replay` reproduces it and every verdict.
"""
from __future__ import annotations

import json
import re

import pytest
from scipy import stats as scipy_stats
from starlette.testclient import TestClient

from agents import scoring
from agents.event_types import JobResult, RunStarted
from agents.events import Event
from agents.llm import context as ctx
from agents.offline.engine import OfflineEngine
from agents.records import Candidate
from archlab.runstore import RunRecord
from archlab.ui import views
from archlab.ui.app import create_app
from evaluators import stats
from evaluators.baselines import BASELINES
from evaluators.fitness import Objective
from tests.runs_support import archlab, events, only_run
from wire.jobs import EvalResult

ACCURACY = Objective(metric="accuracy")
LOSS = Objective(metric="heldout_loss", higher_is_better=False)
FLOOR = 0.02
# three baselines, each run twice d apart: pooled sd d/sqrt(2) with 3 df, so the floor t(3) * sd * sqrt(2) is t(3) * d
SPREAD = FLOOR / scipy_stats.t.ppf(0.975, 3)


def result(cid: str, fidelity: str = "short", seed: int = 0, **metrics) -> EvalResult:
    return EvalResult(job_id=f"{cid}-{fidelity}-seed{seed}-0", candidate_id=cid, fidelity=fidelity, status="ok",
                      metrics=metrics)


def baseline(cid: str, accuracy: float, loss: float = 2.0) -> Candidate:
    """A baseline run twice at short, SPREAD apart in accuracy and in loss; its score is the first run's."""
    runs = [result(cid, seed=0, accuracy=accuracy, heldout_loss=loss, params=1e5),
            result(cid, seed=1, accuracy=accuracy + SPREAD, heldout_loss=loss + SPREAD, params=1e5)]
    genome, source = BASELINES["softmax_attention"]
    return Candidate(id=cid, run_id="run-1", task="mqar", title=f"baseline: {cid}", change="baseline", source=source,
                     status="baseline", genome=genome, evaluations={"short": runs[0]}, seeds={"short": runs})


def child(cid: str, accuracy: float, loss: float = 2.0, parent: str = "b-softmax") -> Candidate:
    return Candidate(id=cid, run_id="run-1", task="mqar", title=f"{parent}: a change", change="short_conv",
                     source=f"# {cid}\n", status="evaluated", parent_ids=[parent],
                     evaluations={"short": result(cid, accuracy=accuracy, heldout_loss=loss, params=1e5)})


def population(accuracy: float, loss: float = 2.0) -> list[Candidate]:
    """Three baselines (b-softmax the best at 0.500) and c001, one run at short, built on b-softmax."""
    return [baseline("b-softmax", 0.500), baseline("b-linear", 0.300), baseline("b-mlp", 0.050),
            child("c001", accuracy, loss)]


def write_run(root, candidates: list[Candidate], objective: Objective = ACCURACY):
    run = root / "run-1"
    for c in candidates:
        (run / "candidates" / c.id).mkdir(parents=True)
        (run / "candidates" / c.id / "candidate.json").write_text(c.model_dump_json())
        (run / "candidates" / c.id / "candidate.py").write_text(c.source)
    settings = {"task": "mqar", "rounds": 1, "objective": objective.model_dump(mode="json")}
    (run / "run.json").write_text(json.dumps({"run_id": "run-1", "settings": settings,
                                              "objective": objective.model_dump(mode="json")}))
    (run / "events.jsonl").write_text("")
    return run


def flat(text: str) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(text.split())


def row_of(table: str, cid: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"│ {cid} "))


def client(root) -> TestClient:
    return TestClient(create_app(root), base_url="http://127.0.0.1")


# --- the floor -------------------------------------------------------------------------------------------------
def test_the_floor_is_the_interval_of_a_difference_of_two_single_runs_from_the_pooled_seed_spread():
    found = stats.noise_floor([[0.50, 0.50 + SPREAD], [0.30, 0.30 + SPREAD], [0.05, 0.05 + SPREAD], [0.9]])
    assert found.dof == 3 and found.groups == 3 and found.results == 6         # a single run carries no spread
    assert found.std == pytest.approx(SPREAD / 2 ** 0.5)
    assert found.half_width == pytest.approx(FLOOR)
    assert stats.noise_floor([[0.5], [0.6]]) is None
    floors = scoring.noise_floors(population(0.512), ACCURACY)
    assert set(floors) == {"short"} and floors["short"].value == pytest.approx(FLOOR)
    assert floors["short"].sources == ("b-linear", "b-mlp", "b-softmax")      # proposals never set the floor
    assert "accuracy ±0.020 at short" in floors["short"].text()


# --- verdicts: one function, every reader ------------------------------------------------------------------------
@pytest.mark.parametrize("objective, inside, beyond", [
    (ACCURACY, dict(accuracy=0.512), dict(accuracy=0.530)),
    (LOSS, dict(accuracy=0.5, loss=1.988), dict(accuracy=0.5, loss=1.970)),     # lower is better: the sign flips
])
def test_a_child_is_better_only_beyond_the_floor_in_the_objectives_direction(objective, inside, beyond):
    for metrics, word in ((inside, "not distinguishable"), (beyond, "better")):
        pool = population(**metrics)
        found = scoring.verdict(pool[3], pool[0], objective, scoring.noise_floors(pool, objective))
        assert (found.word, found.basis, found.fidelity) == (word, "floor", "short")
        assert found.low == pytest.approx(found.delta - FLOOR) and found.high == pytest.approx(found.delta + FLOOR)
        assert "the noise floor ±0.020 at short" in found.text() and found.text().endswith(word)
    worse = population(accuracy=0.470, loss=2.030)
    assert scoring.verdict(worse[3], worse[0], objective, scoring.noise_floors(worse, objective)).word == "worse"


def test_without_a_measured_floor_a_single_run_is_never_better():
    pool = [Candidate(**{**c.model_dump(), "seeds": {}}) for c in population(0.600)]
    found = scoring.verdict(pool[3], pool[0], ACCURACY, scoring.noise_floors(pool, ACCURACY))
    assert (found.word, found.basis, found.low) == ("not distinguishable", "no floor", None)
    assert "no noise floor measured at short" in found.text()


def test_over_seeds_the_interval_of_the_difference_decides():
    def at_full(c: Candidate, values: list[float]) -> Candidate:
        runs = [result(c.id, "full", k, accuracy=v) for k, v in enumerate(values)]
        full = result(c.id, "full", accuracy=sum(values) / len(values))
        return c.model_copy(update={"evaluations": {**c.evaluations, "full": full}, "seeds": {**c.seeds, "full": runs}})
    parent, close, clear = population(0.512)[0], population(0.512)[3], population(0.512)[3]
    parent = at_full(parent, [0.50, 0.52, 0.51])
    close, clear = at_full(close, [0.53, 0.49, 0.52]), at_full(clear, [0.60, 0.61, 0.62])
    for candidate, word in ((close, "not distinguishable"), (clear, "better")):
        found = scoring.verdict(candidate, parent, ACCURACY, {})
        assert (found.basis, found.fidelity, found.word, found.seeds) == ("seeds", "full", word, (3, 3))
        assert "over 3 and 3 seeds" in found.text() and found.low <= found.delta <= found.high


def test_show_the_page_its_json_and_both_analysts_say_not_distinguishable_inside_the_floor(tmp_path):
    pool = population(0.512)
    run = write_run(tmp_path, pool)
    shown = archlab("show", str(run))
    assert shown.returncode == 0, shown.stderr
    row = row_of(shown.stdout, "c001")
    assert "+0.012 [-0.008, +0.032] not distinguishable" in row and "better" not in row
    out = flat(shown.stdout)
    assert "noise floor: accuracy ±0.020 at short" in out
    assert "best: c001 (proposal), accuracy 0.512 at short" in out
    assert "tied with b-softmax within the noise floor ±0.020 at short" in out
    assert "best proposal: c001, accuracy 0.512 at short; it beats 2 of 3 baselines beyond the noise (b-linear, " \
           "b-mlp); not distinguishable from b-softmax" in out

    with client(tmp_path) as http:
        page = http.get("/runs/run-1/candidates/c001").text
        api = http.get("/api/runs/run-1/candidates/c001").json()
        runs = {r["id"]: r for r in http.get("/api/runs").json()}
        panel = http.get("/runs/run-1/panel").text
    versus = re.search(r'<dd id="versus" data-verdict="([^"]+)">([^<]*)</dd>', page)
    assert versus.group(1) == "not distinguishable" and "better" not in versus.group(2)
    assert "95% interval -0.008 to +0.032: the noise floor ±0.020 at short" in versus.group(2)
    assert api["versus_parent"]["verdict"] == "not distinguishable" and not api["versus_parent"]["better"]
    assert api["versus_parent"]["low"] == pytest.approx(-0.008) and api["versus_parent"]["high"] == pytest.approx(0.032)
    best = runs["run-1"]["best"]
    assert best["id"] == "c001" and best["tied"] == ["b-softmax"] and best["lead"]["verdict"] == "not distinguishable"
    assert runs["run-1"]["floors"][0]["floor"] == pytest.approx(FLOOR)
    assert 'data-tied="1"' in panel and "tied with b-softmax within the noise floor" in panel
    assert re.search(r'<tr data-id="c001".*?class="versus"[^>]*>\+0\.012 \[-0\.008, \+0\.032\] not distinguishable',
                     panel, re.S)

    parent, baselines = pool[0], pool[:3]
    offline, _ = OfflineEngine(0, ACCURACY).analyze(pool[3], parent, baselines)
    measured, evidence = ctx.measured(pool[3], parent, baselines, ACCURACY)
    for text in (offline, measured):
        claims = text.replace("higher is better", "")               # the objective's direction is no claim
        assert "not distinguishable" in claims and "improved" not in claims and "better" not in claims
        assert "the change did not move accuracy beyond the noise" in claims
    assert "95 percent interval -0.008 to 0.032" in measured          # as JSON numbers, for the model to copy
    assert evidence["floor_accuracy"] == pytest.approx(FLOOR)


def test_beyond_the_floor_every_reader_says_better_with_its_interval(tmp_path):
    pool = population(0.530)
    run = write_run(tmp_path, pool)
    shown = archlab("show", str(run)).stdout
    assert "+0.030 [+0.010, +0.050] better" in row_of(shown, "c001")
    shown = flat(shown)
    assert "best: c001 (proposal)" in shown and "tied" not in shown
    assert "its lead over the runner-up b-softmax (baseline, 0.500): accuracy +0.030 at short (95% interval +0.010 " \
           "to +0.050: the noise floor ±0.020 at short, single runs): better" in shown
    with client(tmp_path) as http:
        api = http.get("/api/runs/run-1/candidates/c001").json()
        best = http.get("/api/runs").json()[0]["best"]
    assert api["versus_parent"]["verdict"] == "better" and best["tied"] == [] and best["lead"]["verdict"] == "better"
    offline, findings = OfflineEngine(0, ACCURACY).analyze(pool[3], pool[0], pool[:3])
    assert "+0.030 at short" in offline and "the change improved accuracy" in offline
    assert findings[0].evidence["floor_accuracy"] == pytest.approx(FLOOR)


def test_the_analyst_model_is_shown_the_verdict_and_its_measured_text_carries_it(tmp_path):
    from agents.llm.fake import Answer, FakeEndpoint
    from tests.llm_support import ANALYSIS, engine
    pool = population(0.512)
    with FakeEndpoint({"analyst-m": [Answer.json(ANALYSIS)]}) as fake:
        eng, _ = engine(fake.url, tmp_path)
        text, _ = eng.analyze(pool[3], pool[0], pool[:3])
        prompt = fake.received[0].text
    comparison = prompt.split("# The measured comparison")[-1]
    assert "not distinguishable" in comparison and "noise floor" in comparison
    assert "never call it better" in prompt
    assert "Measured:" in text and "not distinguishable" in text.split("Measured:")[1]


def test_better_than_random_counts_only_the_references_beaten_beyond_the_floor():
    from agents.nodes.analyze import random_sentence
    references = [child(cid, accuracy).model_copy(update={"status": "reference", "parent_ids": []})
                  for cid, accuracy in (("r-01", 0.505), ("r-02", 0.400))]
    pool = population(0.512) + references
    over = scoring.over_random(pool[3], pool, ACCURACY)
    assert over["pool"] == 2 and over["beats"] == 1.0 and over["better_than"] == 1     # above both, beyond one
    assert "better than 1 of them beyond the noise" in random_sentence(over)
    assert over["delta"] == pytest.approx(0.512 - (0.505 + 0.400) / 2) and over["random_mean"] == pytest.approx(0.4525)


def test_over_random_is_in_the_metrics_own_units_when_lower_is_better():
    loss = Objective(metric="heldout_loss", higher_is_better=False)
    references = [child(cid, 0.5, loss).model_copy(update={"status": "reference", "parent_ids": []})
                  for cid, loss in (("r-1", 2.0), ("r-2", 3.0))]
    better = child("c009", 0.5, 1.5)
    over = scoring.over_random(better, references + [better], loss)
    assert over["delta"] == pytest.approx(1.5 - 2.5) and over["beats"] == 1.0 and over["z"] > 0


# --- the run's best --------------------------------------------------------------------------------------------
def test_the_best_changes_only_on_a_lead_beyond_the_floor():
    pool = population(0.512) + [child("c002", 0.530), child("c003", 0.545)]
    standing = scoring.standing(pool[:4], ACCURACY)
    assert standing.best.candidate.id == "c001" and [s.candidate.id for s, _ in standing.tied] == ["b-softmax"]
    standing = scoring.standing(pool, ACCURACY)          # c003 leads b-softmax beyond the floor, but not c002
    assert [s.candidate.id for s, _ in standing.tied] == ["c002"]

    # over time, a new top inside the floor leaves the incumbent in place
    times = {"b-softmax": 1.0, "b-linear": 2.0, "b-mlp": 3.0, "c001": 4.0, "c002": 5.0, "c003": 6.0}
    started = RunStarted(run_id="r", task="mqar", rounds=1, engine="offline", sandbox="process",
                         spec={"name": "mqar", "family": "sequence"})
    log = [Event.of(started, 0, 0.0)] + [
        Event.of(JobResult(job_id=f"{cid}-short-0", candidate_id=cid, fidelity="short", status="ok", metrics={},
                           message="", timings={}), i, t) for i, (cid, t) in enumerate(times.items(), 1)]
    record = RunRecord(run_id="r", path=None, record={}, events=log, candidates=pool, objective=ACCURACY,
                             waiting=[], decided={}, driven=False, state="finished")
    steps = [(t, s.candidate.id) for t, s in views.best_over_time(record)]
    assert steps == [(1.0, "b-softmax"), (5.0, "c002")], steps      # c001 (+0.012) does not take it, c002 (+0.030) does, c003 (+0.015 on c002) not


# --- a real run: measured, logged, replayed --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("noise-runs")
    out = archlab("run", "--rounds", "1", "--runs-dir", str(runs), timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return runs, only_run(runs), out.stdout


def test_a_run_measures_its_floor_on_the_baselines_and_logs_it(tiny_run):
    runs, run_dir, printed = tiny_run
    log = events(run_dir)
    noise_jobs = [e["payload"] for e in log if e["type"] == "job_started" and "-short-seed1-" in e["payload"]["job_id"]]
    assert sorted(j["candidate_id"] for j in noise_jobs) == ["b-linear", "b-mlp", "b-softmax"]
    assert all(j["seed"] == 1 for j in noise_jobs)                   # the same job, one seed on
    floors = [e["payload"] for e in log if e["type"] == "noise_floor"]
    assert floors and floors[0]["round"] == 0
    short = next(f for f in floors[0]["floors"] if f["fidelity"] == "short")
    assert short["sources"] == ["b-linear", "b-mlp", "b-softmax"] and short["results"] == 6 and short["dof"] == 3
    records = {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("candidates/*/candidate.json")}
    first = records["b-softmax"]["seeds"]["short"][0]
    assert records["b-softmax"]["evaluations"]["short"]["metrics"] == first["metrics"]   # its score is one run
    comparisons = {e["payload"]["candidate_id"]: e["payload"] for e in log if e["type"] == "comparison"}
    for cid in ("c001", "c002"):
        if records[cid]["status"] != "evaluated":
            continue
        verdict = comparisons[cid]
        assert verdict["fidelity"] == "short" and verdict["basis"] == "floor"
        assert verdict["floor"] == pytest.approx(short["floor"])
        assert verdict["low"] == pytest.approx(verdict["delta"] - short["floor"])
        assert verdict["verdict"] == ("better" if verdict["delta"] > short["floor"] else "worse"
                                      if verdict["delta"] < -short["floor"] else "not distinguishable")
        assert verdict["text"] in records[cid]["analysis"]          # the analysis prints the same verdict
    assert "noise floor: accuracy ±" in flat(printed) and "vs parent (95% interval)" in printed


def test_replay_reproduces_the_floor_and_the_verdicts_and_a_changed_floor_diverges(tiny_run, tmp_path):
    runs, run_dir, _ = tiny_run
    out = archlab("replay", run_dir.name, "--runs-dir", str(runs))
    assert out.returncode == 0 and "replay matches" in out.stdout, out.stdout + out.stderr
    replayed = sorted((run_dir / "replays").iterdir())[-1]
    assert [e["payload"] for e in events(replayed) if e["type"] == "noise_floor"] == \
           [e["payload"] for e in events(run_dir) if e["type"] == "noise_floor"]

    import shutil
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("replays", "checkpoints.sqlite*", "knowledge"))
    lines = []
    for line in (copy / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "result" and event["payload"]["job_id"] == "b-mlp-short-seed1-0":
            event["payload"]["result"]["metrics"]["accuracy"] += 0.05    # a noisier baseline: a wider floor
        lines.append(json.dumps(event))
    (copy / "events.jsonl").write_text("\n".join(lines) + "\n")
    diverged = archlab("replay", str(copy))
    assert diverged.returncode == 1 and "noise_floor" in diverged.stdout.replace("\n", ""), diverged.stdout
