"""The review page's routes: a Starlette app over one runs directory.

    GET  /                                   runs: state, rounds, candidates, best, LLM cost
    GET  /compare?run=A&run=B                best-so-far curves of several runs on one plot
    GET  /runs/{run}                         one run: live progress, plots, jobs, the candidate table
    GET  /runs/{run}/panel                   the live part of that page (what the page's script swaps in)
    GET  /runs/{run}/version                 a fingerprint that changes when the run does (JSON; polled)
    GET  /runs/{run}/candidates/{id}         one candidate: code and diff, metrics, curve, log, analysis
    GET  /runs/{run}/candidates/{id}/files/{path}   a file of the candidate's directory, as text
    GET  /runs/{run}/review                  what waits for review; POST /runs/{run}/review/{id} decides
    GET  /runs/{run}/review/panel            the live part of the review page
    GET  /runs/{run}/knowledge?q=            semantic search over the run's findings and the principles
    GET  /runs/{run}/replay?step=N           the run's events in order, with the decision at each step
    GET  /api/runs                           the runs page as JSON (the best, its lead's verdict, the noise floors)
    GET  /api/runs/{run}/candidates/{id}     one candidate as JSON: score, verdict against its parent, analysis

Runs are read through `archlab.runstore` (`run_dir_named`, `load_run`, `run_version`,
`candidate_file`) and decided on through `archlab.reviews.write_decision`, the same files
`archlab review` writes, so a running or stopped run takes a decision up exactly as it does
from the CLI. A run being written is shown as it stands: a torn last line is left out, a run
with no run.json yet is "starting", a run deleted while open is a 404 that says so.

What it does not do: decide who may call it (`archlab.ui.security`), or run anything.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agents import scoring
from agents.events import EventSchemaError
from archlab import runstore
from archlab.reviews import write_decision
from archlab.ui import views
from archlab.ui.security import Guard, csrf_ok, new_token

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 2_000_000          # an edited module fits; anything larger is refused (413)
ACTIONS = ("approve", "reject", "edit")


def create_app(runs_dir: Path, token: str | None = None) -> Starlette:
    """The page over `runs_dir`; with `token`, every request needs it (`archlab.ui.security`)."""
    runs_dir = Path(runs_dir)
    csrf = new_token()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["minutes"] = lambda seconds: f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
    env.filters["pretty"] = lambda value: json.dumps(value, indent=1, default=_plain, ensure_ascii=False)
    knowledge = views.KnowledgeIndex()

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        html = env.get_template(name).render(csrf=csrf, runs_dir=str(runs_dir), path=request.url.path, **context)
        return HTMLResponse(html, status)

    def load(name: str) -> runstore.RunRecord:
        return runstore.load_run(runstore.run_dir_named(runs_dir, name))

    # --- pages ---------------------------------------------------------------------------------------------
    def runs_page(request: Request) -> Response:
        return page(request, "runs.html", title="runs", rows=_rows(runs_dir))

    def runs_json(request: Request) -> Response:
        return JSONResponse(_json([views.overview_json(row) for row in _rows(runs_dir)]))

    def run_page(request: Request) -> Response:
        run = load(request.path_params["run"])
        return page(request, "run.html", title=run.run_id, run=run, **_panel(run, request))

    def run_panel(request: Request) -> Response:
        run = load(request.path_params["run"])
        return page(request, "run_panel.html", run=run, **_panel(run, request))

    def run_version(request: Request) -> Response:
        try:
            version = runstore.run_version(runstore.run_dir_named(runs_dir, request.path_params["run"]))
        except (runstore.RunNotFound, FileNotFoundError):
            return JSONResponse({"version": None, "state": "deleted"}, 404)
        return JSONResponse({"version": version})

    def candidate_of(run: runstore.RunRecord, cid: str):
        by_id = {c.id: c for c in run.candidates}
        candidate = by_id.get(cid)
        if candidate is None:
            raise runstore.ArtifactNotFound(f"run {run.run_id} has no candidate {cid!r}")
        return candidate, by_id.get(candidate.parent_ids[0]) if candidate.parent_ids else None

    def candidate_page(request: Request) -> Response:
        run = load(request.path_params["run"])
        cid = request.path_params["candidate"]
        candidate, parent = candidate_of(run, cid)
        objective = run.objective
        findings, principles = views.drew_on(run, cid)
        return page(request, "candidate.html", title=f"{cid} · {run.run_id}", run=run, c=candidate, parent=parent,
                    score=scoring.score(candidate, objective) if objective else None,
                    versus=views.versus_parent(run, candidate),
                    diff=views.diff(parent, candidate), evaluations=views.evaluations(candidate, objective.metric
                                                                                      if objective else None),
                    curve=views.curve_plot(candidate), findings=findings, principles=principles,
                    twins=views.twins(run, candidate), metric=objective.metric if objective else "")

    def candidate_json(request: Request) -> Response:
        run = load(request.path_params["run"])
        candidate, parent = candidate_of(run, request.path_params["candidate"])
        found = scoring.score(candidate, run.objective) if run.objective else None
        versus = views.versus_parent(run, candidate)
        return JSONResponse(_json({"id": candidate.id, "status": candidate.status, "origin": scoring.origin(candidate),
                             "parent": parent.id if parent else None, "title": candidate.title,
                             "score": None if found is None else {"value": found.value, "fidelity": found.fidelity,
                                                                  "feasible": found.feasible},
                             "versus_parent": None if versus is None else versus.as_dict(),
                             "analysis": candidate.analysis, "models": candidate.models}))

    def candidate_file(request: Request) -> Response:
        run_dir = runstore.run_dir_named(runs_dir, request.path_params["run"])
        path = runstore.candidate_file(run_dir, request.path_params["candidate"], request.path_params["path"])
        # always as text: a file a candidate wrote must never be rendered as a page of this site
        return FileResponse(path, media_type="text/plain; charset=utf-8",
                            headers={"Content-Disposition": f'inline; filename="{path.name}"'})

    def review_page(request: Request) -> Response:
        run = load(request.path_params["run"])
        return page(request, "review.html", title=f"review · {run.run_id}", run=run, **_review(run, request))

    def review_panel(request: Request) -> Response:
        run = load(request.path_params["run"])
        return page(request, "review_panel.html", run=run, **_review(run, request))

    async def review_post(request: Request) -> Response:
        form = await _form(request)
        if not csrf_ok(csrf, form.get("csrf")):
            return page(request, "error.html", 403, title="refused",
                        message="This form is out of date or did not come from this page (its CSRF token does not "
                                "match). Reload the review page and decide again.")
        return await run_in_threadpool(decide, request, form)

    def decide(request: Request, form: dict[str, str]) -> Response:
        run = load(request.path_params["run"])
        cid, action = request.path_params["candidate"], form.get("action", "")
        if action not in ACTIONS:
            return page(request, "error.html", 400, title="bad request", run=run,
                        message=f"unknown action {action!r}; use approve, reject or edit")
        request_ = next((r for r in run.waiting if r.candidate_id == cid
                         and form.get("fidelity", r.fidelity) == r.fidelity), None)
        if request_ is None:
            return page(request, "error.html", 409, title="not waiting", run=run,
                        message=f"{cid} is not waiting for review (it may have been decided already).")
        if cid in run.decided:
            return page(request, "error.html", 409, title="already decided", run=run,
                        message=f"a decision ({run.decided[cid].get('action')}) is already recorded for {cid}; "
                                "the run takes it up at its next look")
        source = plan = None
        if action == "edit":
            candidate = next((c for c in run.candidates if c.id == cid), None)
            code = form.get("code", "").replace("\r\n", "\n")
            if code.strip() and (candidate is None or code != candidate.source):
                source = code
            before = request_.plan or {}
            plan = {k: form[k] for k in ("title", "motivation") if form.get(k, "").strip()
                    and form[k] != before.get(k)}
            if source is None and not plan:
                return page(request, "error.html", 400, title="nothing edited", run=run,
                            message="Nothing was changed in the code, title or hypothesis; approve it instead.")
        write_decision(run.path, request_, action, form.get("note", ""), source=source, plan=plan)
        return RedirectResponse(f"/runs/{run.run_id}/review?decided={cid}", 303)

    def knowledge_page(request: Request) -> Response:
        run = load(request.path_params["run"])
        query = request.query_params.get("q", "").strip()[:500]
        found, principles = knowledge.search(run, query) if query and run.record else ([], [])
        return page(request, "knowledge.html", title=f"knowledge · {run.run_id}", run=run, query=query, found=found,
                    principles=principles, findings=knowledge.findings(run))

    def replay_page(request: Request) -> Response:
        run = load(request.path_params["run"])
        try:
            step = int(request.query_params.get("step", "0"))
        except ValueError:
            step = 0
        step, rows = views.replay_rows(run, step)
        decisions = views.decision_steps(run)
        return page(request, "replay.html", title=f"replay · {run.run_id}", run=run, step=step, rows=rows,
                    total=len(run.events), previous=max([i for i in decisions if i < step], default=None),
                    following=min([i for i in decisions if i > step], default=None),
                    current=next((r for r in rows if r["index"] == step), None))

    def compare_page(request: Request) -> Response:
        names = request.query_params.getlist("run")
        runs, missing = [], []
        for name in names[:8]:
            try:
                runs.append(load(name))
            except (runstore.RunNotFound, FileNotFoundError):
                missing.append(name)
        return page(request, "compare.html", title="compare", runs=runs, missing=missing,
                    plot=views.compare_plot(runs), rows=_rows(runs_dir))

    # --- what a page in the middle of a change looks like ----------------------------------------------------
    def gone(request: Request, exc: Exception) -> Response:
        if request.url.path.endswith("/version"):
            return JSONResponse({"version": None, "state": "deleted"}, 404)
        if isinstance(exc, FileNotFoundError):
            message = "This run was deleted (or moved) while the page was open."
        else:
            message = str(exc)
        return page(request, "error.html", 404, title="not found", message=message)

    def unreadable(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 409, title="cannot be read",
                    message=f"A record of this run cannot be read by this archlab: {str(exc)[:600]}. "
                            "Open it with the archlab that wrote it.")

    def http_error(request: Request, exc: HTTPException) -> Response:
        return page(request, "error.html", exc.status_code, title=str(exc.status_code), message=exc.detail)

    routes = [
        Route("/", runs_page), Route("/api/runs", runs_json), Route("/compare", compare_page),
        Route("/runs/{run}", run_page), Route("/runs/{run}/panel", run_panel), Route("/runs/{run}/version", run_version),
        Route("/runs/{run}/candidates/{candidate}", candidate_page),
        Route("/api/runs/{run}/candidates/{candidate}", candidate_json),
        Route("/runs/{run}/candidates/{candidate}/files/{path:path}", candidate_file),
        Route("/runs/{run}/review", review_page), Route("/runs/{run}/review/panel", review_panel),
        Route("/runs/{run}/review/{candidate}", review_post, methods=["POST"]),
        Route("/runs/{run}/knowledge", knowledge_page), Route("/runs/{run}/replay", replay_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {runstore.RunNotFound: gone, runstore.ArtifactNotFound: gone, FileNotFoundError: gone,
                EventSchemaError: unreadable, ValidationError: unreadable, HTTPException: http_error}
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token, csrf=csrf)],
                    exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.knowledge = knowledge
    return app


def _rows(runs_dir: Path) -> list[dict]:
    rows = []
    for name in runstore.run_dir_names(runs_dir):
        try:
            rows.append(views.overview(runstore.load_run(runs_dir / name)))
        except FileNotFoundError:        # deleted between the listing and the read
            continue
        except (EventSchemaError, ValidationError) as exc:
            rows.append({"id": name, "task": "?", "state": f"unreadable: {str(exc)[:120]}", "driven": False,
                         "rounds": "", "candidates": 0, "scored": 0, "best": None, "standing": None, "floors": [],
                         "metric": "", "cost": 0.0, "waiting": 0, "started": ""})
    return rows


def _panel(run: runstore.RunRecord, request: Request) -> dict:
    sort = request.query_params.get("sort", "rank")
    order = request.query_params.get("order", "asc")
    flight, finished = views.jobs(run, time.time())
    href = f"/runs/{run.run_id}/candidates/{{id}}"
    return {"overview": views.overview(run), "best_plot": views.best_plot(run), "pareto_plot": views.pareto_plot(run),
            "lineage_plot": views.lineage_plot(run, href), "tau_plot": views.tau_plot(run),
            "suite": views.suite_report(run),
            "rows": views.candidate_rows(run, sort if sort in views.SORTS else "rank", order == "desc"),
            "sort": sort, "order": order, "flight": flight, "finished": finished,
            "cost_axis": run.objective.costs[0] if run.objective and run.objective.costs else ""}


def _review(run: runstore.RunRecord, request: Request) -> dict:
    made = views.decisions_made(run)
    cid, flash = request.query_params.get("decided", ""), ""
    taken = next((d for d in made if d.candidate_id == cid), None)
    if cid in run.decided:
        flash = f"{run.decided[cid].get('action')} recorded for {cid}" + (
            "; the run takes it up within a moment" if run.driven else "; it applies when the run is resumed")
    elif taken is not None:
        flash = f"{taken.action} recorded for {cid}; the run has taken it up"
    return {"items": views.review_items(run), "made": made, "flash": flash}


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind these pages send), at most MAX_FORM_BYTES."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES:,} bytes")
    try:
        values = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not UTF-8 urlencoded") from None
    return {k: v[0] for k, v in values.items()}


def _json(value):
    """`value` with every non-finite number as null: JSON has no NaN (a diverged run's metric)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def _plain(value):
    """What `pretty` prints for a value JSON lacks: a record (a payload's nested model) as its fields, else its text."""
    return value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else str(value)


def _num(value, pattern: str = ".4g") -> str:
    if value is None:
        return "-"
    try:
        return format(value, pattern)
    except (TypeError, ValueError):
        return str(value)
