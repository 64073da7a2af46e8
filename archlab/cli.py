"""The `archlab` command: run, resume, runs, show, eval, ui, tasks, new-task.

The CLI decides what people see: progress bars, tables and error messages that say what to
do next. Library code below it never prints.
"""
from __future__ import annotations

import json
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from archlab.runstore import RunNotFound, find_run, list_runs, override_settings, owner_alive, record_override

if TYPE_CHECKING:     # settings import the tasks, and so torch: `runs`, `show`, `review` never load it
    from archlab.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="archlab: an autonomous research lab for neural architectures.")
# a table piped to a file or CI log is not squeezed into 80 columns
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


def fail(message: str, hint: str = "") -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}")       # plain text: "[llm]" is a table, not markup
    if hint:
        errors.print(f"[yellow]next:[/] {escape(hint)}")
    raise typer.Exit(2)


def _settings(config: Optional[Path], **flags) -> Settings:
    from archlab.settings import SettingsError, load_settings
    try:
        return load_settings(config, **flags)
    except SettingsError as exc:
        fail(str(exc), "fix the setting and run again; `archlab run --help` lists them")


@app.command()
def run(task: str = typer.Option(None, help="task to research: a name (`archlab tasks`) or path/to/task.py:Class"),
        rounds: int = typer.Option(None, help="rounds after the baselines"),
        sandbox: str = typer.Option(None, help="process | docker"),
        llm: str = typer.Option(None, help="offline | openai"),
        seed: int = typer.Option(None, help="seed for the engine and training"),
        runs_dir: Path = typer.Option(None, help="where run directories go (default runs/)"),
        short_steps: int = typer.Option(None, help="training steps of the short fidelity"),
        keep_proxy: float = typer.Option(None, help="share of the proxy rung trained at short (loop.keep_proxy)"),
        promote: float = typer.Option(None, help="share of the short rung trained at full (loop.promote_fraction)"),
        random_pool: int = typer.Option(None, help="random architectures measured as the yardstick (loop.random_pool)"),
        workers: int = typer.Option(None, help="jobs run at once (executor.workers; default: from cores and GPUs)"),
        batch: int = typer.Option(None, help="candidates proposed per round (loop.batch; default: = workers)"),
        config: Path = typer.Option(None, help="a TOML settings file")):
    """Start a research run and drive it to the end of its round budget."""
    task_options = {"short_steps": short_steps} if short_steps is not None else None
    settings = _settings(config, task=task, rounds=rounds, seed=seed, runs_dir=runs_dir,
                         sandbox__backend=sandbox, llm__backend=llm, task_options=task_options,
                         loop__keep_proxy=keep_proxy, loop__promote_fraction=promote, loop__random_pool=random_pool,
                         executor__workers=workers, loop__batch=batch)
    from archlab.session import start_run
    engine, box, spec = _preflight(settings)    # refuse an unreachable engine or sandbox before anything starts
    run_id, run_dir = start_run(settings)
    console.print(f"run [bold]{run_id}[/] in {run_dir}")
    _print_capacity(settings)
    _drive(settings, run_id, run_dir, resume=False, engine=engine, sandbox=box, spec=spec)


def _check_services(settings: Settings) -> None:
    """Fail before the run starts, saying what to do, when a scale-out service the settings name does not answer."""
    from archlab.checkpoints import CheckpointStoreUnavailable, check_checkpoint_store
    from archlab.settings import SettingsError
    from knowledge.store import KnowledgeStoreUnavailable, check_server
    if settings.executor.backend == "ray":
        from archlab.backends import capacity
        try:
            from archlab.executors.ray_executor import RayClusterUnavailable
            capacity(settings)                  # connects (or starts a local Ray instance)
        except ImportError as exc:
            fail(f"setting 'executor.backend': 'ray' needs Ray ({exc})", "pip install 'archlab[ray]'")
        except SettingsError as exc:
            fail(str(exc), "lower the setting or add the nodes that have it")
        except RayClusterUnavailable as exc:
            fail(str(exc), "or run with executor.backend = 'local'")
    try:
        check_checkpoint_store(settings.checkpoints.url)
        check_server(settings.knowledge.url)
    except (CheckpointStoreUnavailable, KnowledgeStoreUnavailable) as exc:
        fail(str(exc), "start the service (docker-compose.yml has both) or unset the setting")


def _check_task(settings: Settings):
    """The task's spec, built before the run starts (and handed to the run): data the task cannot find or read (a
    missing table, a corpus too small) is refused with the task's reason, and no run directory is made."""
    from archlab.resolved import task_spec
    try:
        return task_spec(settings)
    except (ValueError, OSError, KeyError) as exc:
        fail(f"task {settings.task}: {exc}", "fix task_options (`archlab tasks NAME` describes each option)")


def _preflight(settings: Settings):
    from agents.engine import EngineUnavailable
    from archlab.backends import capacity, make_engine
    from archlab.sandboxes import make_sandbox
    from archlab.settings import SettingsError
    from sandbox.base import SandboxUnavailable
    _check_services(settings)                   # the Ray cluster, checkpoint database and Chroma server named
    try:
        capacity(settings)                      # what this machine can give the run (GPUs asked for, workers)
    except SettingsError as exc:
        fail(str(exc), "lower the setting or run on a machine that has the GPUs")
    spec = _check_task(settings)
    try:
        box = make_sandbox(settings)
    except SandboxUnavailable as exc:
        fail(f"the {settings.sandbox.backend} sandbox cannot run jobs: {exc}", "start the engine or use --sandbox process")
    try:
        engine = make_engine(settings.llm.backend, settings.seed, settings)
        if hasattr(engine, "preflight"):
            engine.preflight()          # one cheap request: a wrong key, model or URL is found before any job
    except EngineUnavailable as exc:
        fail(str(exc), "check the [llm] settings, or use --llm offline")
    return engine, box, spec


def _run_settings(run_dir: Path) -> tuple[dict, Settings]:
    from archlab.settings import recorded_settings
    try:
        record = json.loads((run_dir / "run.json").read_text())
        return record, recorded_settings(record["settings"])
    except (ValueError, KeyError) as exc:
        fail(f"{run_dir}/run.json cannot be loaded: {exc}", "the run directory is damaged or from another version")


@app.command()
def resume(run: str = typer.Argument(..., help="run id, prefix or directory"),
           runs_dir: Path = typer.Option(Path("runs"), help="where run directories are"),
           config: Path = typer.Option(None, help="a TOML file whose \\[llm] and \\[sandbox] tables replace the run's "
                                                   "(a moved endpoint, another image); nothing else may change")):
    """Continue a run from its last checkpoint (after a crash, a stop, or a review decision)."""
    run_dir = _find(runs_dir, run)
    record, settings = _run_settings(run_dir)
    if owner_alive(run_dir):
        fail(f"run {record['run_id']} is already being driven by another process",
             f"`archlab stop {record['run_id']}` first, or wait for it")
    if config is not None:
        from archlab.settings import SettingsError
        try:
            settings, changed = override_settings(record, config)
        except SettingsError as exc:
            fail(str(exc), "fix the file and resume again; run.json is unchanged")
        if changed:
            record_override(run_dir, settings, changed, config)
        console.print(f"settings from {config}: " + (", ".join(f"{k} = {v['to']!r}" for k, v in changed.items())
                                                     or "nothing changed"))
    engine, box, spec = _preflight(settings)    # a moved endpoint or a stopped engine is found before any job
    console.print(f"resuming run [bold]{record['run_id']}[/] in {run_dir}")
    _print_capacity(settings)
    _drive(settings, record["run_id"], run_dir, resume=True, engine=engine, sandbox=box, spec=spec)


@app.command()
def stop(run: str = typer.Argument(..., help="run id, prefix or directory"),
         runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """Ask a running run to stop at its next safe point (it can be resumed)."""
    from agents.control import STOP_FILE
    run_dir = _find(runs_dir, run)
    (run_dir / STOP_FILE).write_text("stop requested\n")
    console.print(f"stop requested for {run_dir.name}; it stops after the current step")


@app.command()
def review(run: str = typer.Argument(..., help="run id, prefix or directory"),
           approve: str = typer.Option(None, help="candidate id to approve"),
           reject: str = typer.Option(None, help="candidate id to reject"),
           edit: str = typer.Option(None, help="candidate id to edit (with --code and/or --title/--motivation)"),
           code: Path = typer.Option(None, help="with --edit: a file holding the new module"),
           title: str = typer.Option(None, help="with --edit: a new plan title"),
           motivation: str = typer.Option(None, help="with --edit: a new hypothesis"),
           note: str = typer.Option("", help="why; recorded with the decision"),
           runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """List what waits for review, or decide on it (approve, reject, edit)."""
    from agents.events import read_events
    from archlab.reviews import waiting_requests, write_decision
    run_dir = _find(runs_dir, run)
    events, _ = read_events(run_dir / "events.jsonl")
    waiting = waiting_requests(events)
    chosen = [(a, c) for a, c in (("approve", approve), ("reject", reject), ("edit", edit)) if c]
    if not chosen:
        if not waiting:
            console.print("nothing waits for review")
        for request in waiting:
            plan = request.plan or {}
            console.print(f"[bold]{request.candidate_id}[/] (round {request.round}) before {request.fidelity}: "
                          f"{plan.get('title', '')}\n  hypothesis: {plan.get('motivation', '')}\n"
                          f"  code: {run_dir / 'candidates' / request.candidate_id / 'candidate.py'}")
        return
    if len(chosen) > 1:
        fail("give one of --approve, --reject or --edit")
    action, candidate_id = chosen[0]
    request = next((r for r in waiting if r.candidate_id == candidate_id), None)
    if request is None:
        fail(f"{candidate_id} is not waiting for review", f"`archlab review {run_dir.name}` lists what waits")
    source = plan = None
    if action == "edit":
        if code is None and title is None and motivation is None:
            fail("--edit needs --code FILE and/or --title / --motivation")
        source = code.read_text() if code is not None else None
        plan = {k: v for k, v in (("title", title), ("motivation", motivation)) if v is not None}
    write_decision(run_dir, request, action, note, source=source, plan=plan)
    console.print(f"{action} recorded for {candidate_id}")
    if not owner_alive(run_dir):
        console.print(f"no process is driving this run; `archlab resume {run_dir.name}` continues it with this decision")


@app.command()
def replay(run: str = typer.Argument(..., help="run id, prefix, directory, or an exported .tar.gz"),
           reexecute: bool = typer.Option(False, "--reexecute", help="re-run the evaluations and report metric drift"),
           runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """Re-drive a run from its log and check that every decision comes out the same."""
    from archlab import replay as replaying
    if run.endswith(".tar.gz") and Path(run).is_file():
        run_dir = replaying.unpack(Path(run), Path(tempfile.mkdtemp(prefix="archlab-import-")))
    else:
        run_dir = _find(runs_dir, run)
    if reexecute:
        _, settings = _run_settings(run_dir)
        from archlab.sandboxes import make_sandbox
        drifts, changed = replaying.reexecute(run_dir, make_sandbox(settings))
        table = Table("job", "metric", "recorded", "re-executed", "difference", title="re-execution")
        for d in drifts:
            table.add_row(d.job_id, d.metric, f"{d.recorded:.6g}", f"{d.reexecuted:.6g}", f"{d.reexecuted - d.recorded:+.3g}")
        console.print(table)
        for line in changed:
            console.print(f"[red]status changed[/] {line}")
        worst = max((abs(d.reexecuted - d.recorded) for d in drifts), default=0.0)
        console.print(f"{len(drifts)} metrics compared; largest difference {worst:.3g}; {len(changed)} status changes")
        raise typer.Exit(1 if changed else 0)
    report = replaying.replay(run_dir)
    if report.ok:
        console.print(f"[green]replay matches[/]: {report.compared} decisions compared ({report.replay_dir})")
        return
    console.print(f"[red]replay diverged[/] at {report.divergence}")
    raise typer.Exit(1)


@app.command()
def export(run: str = typer.Argument(..., help="run id, prefix or directory"),
           out: Path = typer.Option(None, help="archive path (default <run-id>.tar.gz)"),
           runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """Write one archive that another machine can show and replay."""
    from archlab.replay import export as export_run
    run_dir = _find(runs_dir, run)
    archive = export_run(run_dir, out or Path(f"{run_dir.name}.tar.gz"))
    console.print(f"wrote {archive}")


@app.command()
def ui(runs_dir: Path = typer.Option(Path("runs"), help="where run directories are"),
       host: str = typer.Option(None, help="address to listen on (ui.host, default 127.0.0.1); any non-loopback "
                                           "address requires the token"),
       port: int = typer.Option(None, help="port (ui.port, default 8400; 0 picks a free one)"),
       token: bool = typer.Option(False, "--token", help="require the token on loopback too")):
    """Serve the review page: watch runs, compare candidates, approve or reject what waits for review."""
    from archlab.ui.app import create_app
    from archlab.ui.security import needs_token, new_token
    from archlab.ui.server import bind, serve, url
    settings = _settings(None, ui__host=host, ui__port=port)
    host, port = settings.ui.host, settings.ui.port
    secret = None
    if needs_token(host, token):
        secret = settings.ui.token() or new_token()
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}", "pick another --port (0 takes a free one) or --host")
    from_env = secret is not None and secret == settings.ui.token()
    console.print(url(sock, host, None if from_env else secret), soft_wrap=True, highlight=False)
    errors.print(f"serving {runs_dir.resolve()}" + (f"; token from ${settings.ui.token_env}" if from_env else "")
                 + ("" if secret else "; loopback only") + "; Ctrl-C stops")
    serve(create_app(runs_dir, token=secret), sock)


def _drive(settings: Settings, run_id: str, run_dir: Path, resume: bool, engine=None, sandbox=None,
           spec=None) -> None:
    from agents.engine import EngineUnavailable
    from archlab.session import drive, open_lab
    from sandbox.base import SandboxUnavailable

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("baselines", total=settings.rounds, count=f"0/{settings.rounds} rounds")

        def on_stage(round: int, stage: str) -> None:
            done = min(settings.rounds, max(0, round - 1))
            progress.update(bar, completed=done, count=f"{done}/{settings.rounds} rounds",
                            description=f"round {round}/{settings.rounds} · {stage}" if round else f"round 0 · {stage}")

        def on_wait(pending: list) -> None:     # agents.event_types.ReviewWaiting
            for request in pending:
                progress.console.print(f"[yellow]waiting for review[/] of {request.candidate_id} before "
                                       f"{request.fidelity}: `archlab review {run_id}`")
        try:
            with open_lab(settings, run_id, run_dir, on_stage, engine=engine, sandbox=sandbox, spec=spec) as lab, \
                    _graceful_stop(lab.control):
                jobs = progress.add_task(_jobs_line([]), total=None, count=f"{lab.parallelism} worker(s)")
                lab.executor.listeners.append(lambda running: progress.update(jobs, description=_jobs_line(running)))
                workers = lab.parallelism
                _show_occupancy(lab.events, workers, lambda text: progress.update(jobs, count=text))
                outcome = drive(lab, resume=resume, poll_seconds=settings.review.poll_seconds, on_wait=on_wait,
                                checkpoints=settings.checkpoints.url)
        except SandboxUnavailable as exc:
            fail(f"the {settings.sandbox.backend} sandbox cannot run jobs: {exc}",
                 f"start the engine or use --sandbox process; then `archlab resume {run_id}`")
        except EngineUnavailable as exc:
            fail(str(exc))
        if outcome == "finished":
            progress.update(bar, completed=settings.rounds, count=f"{settings.rounds}/{settings.rounds} rounds",
                            description="done")
    _print_table(run_dir)
    logged = _logged(run_dir)
    _print_usage(logged)
    _print_occupancy(run_dir, logged, workers)
    _print_budget_end(logged)
    if outcome == "stopped":
        console.print(f"[yellow]stopped[/]; continue with `archlab resume {run_id}`")
    console.print(f"run written to [bold]{run_dir}[/]")


def _print_capacity(settings: Settings) -> None:
    from archlab.backends import capacity
    from archlab.session import resolve_machine
    batch = resolve_machine(settings).loop.batch
    mode = "warm" if settings.executor.warm else "cold"
    console.print(f"executor: {capacity(settings).describe()}, {mode} workers; {batch} candidate(s) per round")


def _jobs_line(running) -> str:
    """Every job holding a worker right now, for the progress display."""
    import time as _time
    if not running:
        return "jobs: none running"
    return "jobs: " + ", ".join(f"w{j.worker}:{j.job_id} {_time.time() - j.started:.0f}s" for j in running)


@contextmanager
def _graceful_stop(control):
    """First Ctrl-C / SIGTERM: stop at the next safe point. A second Ctrl-C interrupts at once."""
    def handler(signum, frame):
        control.request_stop(signal.Signals(signum).name)
        errors.print("[yellow]stopping at the next safe point[/] (Ctrl-C again to interrupt now)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _find(runs_dir: Path, run: str) -> Path:
    try:
        return find_run(runs_dir, run)
    except RunNotFound as exc:
        fail(str(exc))


@app.command()
def runs(runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """List runs with their best candidate by each run's objective."""
    table = Table("run", "task", "state", "candidates", "best", "quality")
    for summary in list_runs(runs_dir):
        best = summary.best
        tied = summary.standing.tied if summary.standing is not None else []
        table.add_row(summary.run_id, summary.task, summary.state, str(summary.candidates),
                      f"{best.candidate.id} ({best.origin})" + (
                          f", tied with {', '.join(s.candidate.id for s, _ in tied)} within the noise" if tied else "")
                      if best else "-",
                      f"{summary.objective.metric} {best.value:.3f} ({best.fidelity})" if best else "-")
    console.print(table)


@app.command()
def show(run: str = typer.Argument(..., help="run id, prefix or directory"),
         runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """The candidate table of a run."""
    run_dir = _find(runs_dir, run)
    _print_table(run_dir)
    logged = _logged(run_dir)
    _print_usage(logged)
    _print_occupancy(run_dir, logged)


def _logged(run_dir: Path) -> list:
    """The run's events, read once for the summaries printed after a run and by `show`."""
    from agents.events import read_events
    return read_events(run_dir / "events.jsonl")[0]


def _print_occupancy(run_dir: Path, events: list, workers: int | None = None) -> None:
    """Worker occupancy over the time the run was driven (`archlab.occupancy`); `workers` None: as run.json has it."""
    from archlab import occupancy
    if workers is None:
        workers = occupancy.logged_workers(events) or \
            occupancy.recorded_workers(json.loads((run_dir / "run.json").read_text()).get("settings", {}))
    found = occupancy.of_events(events, workers)
    if found.jobs:
        console.print(found.text())


def _show_occupancy(events, workers: int, show) -> None:
    """Keep the progress display's worker line up to date: busy workers now and occupancy so far, after every event
    (earlier sessions of a resumed run included)."""
    import time as _time
    from archlab.occupancy import Meter
    meter = Meter(workers)
    for event in events.history:
        meter.feed(event)

    def seen(event) -> None:
        meter.feed(event)
        show(meter.reading(_time.time()).live_text())
    events.listeners.append(seen)


def _print_usage(events: list) -> None:
    """Tokens and cost per LLM role (and per model where a role used several), when the run used a model."""
    from agents.llm.usage import usage_by_model, usage_by_role
    usage = usage_by_role(events)
    if not usage:
        return
    per_model = usage_by_model(events)
    table = Table("role", "calls", "input tokens", "output tokens", "cost (USD)", title="LLM usage")

    def add(name: str, row: dict) -> None:
        cost = f"{row['cost_usd']:.4f}" + (f" (+{row['unpriced_calls']} unpriced)" if row["unpriced_calls"] else "")
        table.add_row(name, str(row["calls"]), f"{row['input_tokens']:,}", f"{row['output_tokens']:,}", cost)
    for role, row in usage.items():
        add(role, row)
        models = [(model, r) for (r_role, model), r in per_model.items() if r_role == role]
        if len(models) > 1:            # several models served this role (`llm.<role>_model` lists them)
            for model, r in models:
                add(f"  {model}", r)
    table.add_row("total", str(sum(r["calls"] for r in usage.values())),
                  f"{sum(r['input_tokens'] for r in usage.values()):,}",
                  f"{sum(r['output_tokens'] for r in usage.values()):,}",
                  f"{sum(r['cost_usd'] for r in usage.values()):.4f}")
    console.print(table)


def _print_budget_end(events: list) -> None:
    """Why the run made no more proposals, when a `[budget]` cap was the reason."""
    from agents.event_types import BudgetExhausted
    spent = [e.data for e in events if isinstance(e.data, BudgetExhausted)]
    if spent:
        console.print(f"[yellow]no new proposals after round {spent[-1].round - 1}[/]: {spent[-1].reason} "
                      f"(the [budget] settings; what was in flight finished)")


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _print_table(run_dir: Path) -> None:
    """The candidates best first by the run's objective (`agents.scoring`), then those without a score."""
    from agents import scoring
    from agents.recorder import load_candidates
    from archlab.runstore import run_objective
    try:
        objective = run_objective(json.loads((run_dir / "run.json").read_text()))
    except (KeyError, ValueError) as exc:
        fail(f"{run_dir}/run.json cannot be loaded: {exc}", "the run directory is damaged or from another version")
    loaded = load_candidates(run_dir)
    ranked = {s.candidate.id: s for s in scoring.ranked(loaded, objective)}
    candidates = [s.candidate for s in ranked.values()] + [c for c in loaded if c.id not in ranked]
    by_id = {c.id: c for c in loaded}
    floors = scoring.noise_floors(loaded, objective)
    versus = {c.id: _versus(c, by_id, objective, floors) for c in candidates}
    metric = objective.metric
    task = _recorded_task(run_dir)
    with_full = any(c.evaluations.get("full") is not None for c in candidates)
    with_ci = not with_full and any(c.metric(f"{metric}_ci_low") is not None for c in candidates)
    with_params = any(_params(c) is not None for c in candidates)
    with_random = any(c.over_random for c in candidates)
    reported = (task.metric, *task.metrics) if task is not None else ("accuracy", "heldout_loss")
    shown = [metric] + [m for m in reported if m != metric]      # the objective's metric first, then the task's
    columns = ["id", "parent", "change", metric, *(["95% CI"] if with_ci else []),
               *({"heldout_loss": "loss"}.get(m, m.replace("_", " ")) for m in shown[1:]),
               *(["params"] if with_params else []), "status"]
    columns += ["full (95% CI)"] if with_full else []
    columns += [VERSUS]
    columns += ["vs random"] if with_random else []
    table = Table(*columns, title=f"candidates of {run_dir.name}")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for c in candidates:
        feasible = ranked[c.id].feasible if c.id in ranked else c.feasible is not False
        over = f" (over a limit: {', '.join(c.violations)})" if c.violations else " (over a limit)"
        row = [c.id, ", ".join(c.parent_ids) or "-", _change(c, task), _fmt(c.metric(metric), ".3f")]
        if with_ci:
            low, high = c.metric(f"{metric}_ci_low"), c.metric(f"{metric}_ci_high")
            row.append("-" if low is None else f"[{low:.3f}, {_fmt(high, '.3f')}]")
        row += [_fmt(c.metric(m), ".3f") for m in shown[1:]]
        row += [_fmt(_params(c), ",.0f")] if with_params else []
        row.append(c.status + ("" if feasible else over))
        if with_full:
            mean, low, high = (c.metric(k, "full") for k in (metric, f"{metric}_ci_low", f"{metric}_ci_high"))
            row.append("-" if mean is None else f"{mean:.3f} [{_fmt(low, '.3f')}, {_fmt(high, '.3f')}]")
        row.append(versus[c.id])
        if with_random:
            over = c.over_random
            row.append(f"{over['delta']:+.3f} ({over['z']:+.1f} sd, {over['fidelity']})" if over else "-")
        table.add_row(*row)
    console.print(table)
    _print_floors(floors, objective)
    _print_best(loaded, objective, floors)
    _print_one_rung_up(loaded, objective, floors)
    _print_screening(run_dir)
    _print_suite(run_dir, loaded)


def _print_suite(run_dir: Path, candidates) -> None:
    """The downstream suite, where the task has one: per-scenario scores per candidate and the anchor set in use."""
    from agents import anchors
    from agents.events import read_events
    found = anchors.report(candidates, read_events(run_dir / "events.jsonl")[0])
    if found is None:
        return
    table = Table("id", "at", "suite score", "items", *found.scenarios, title="downstream suite (expected accuracy)")
    for r in found.rows:
        table.add_row(r.candidate_id, r.fidelity, f"{r.score:.3f}", str(r.items),
                      *(_fmt(r.scenarios.get(s), ".3f") for s in found.scenarios))
    console.print(table)
    console.print(found.anchor_text())


VERSUS = "vs parent (95% interval)"


def _versus(candidate, by_id: dict, objective, floors) -> str:
    """The verdict against the first parent (`agents.scoring.verdict`): difference, the interval it rests on, word."""
    from agents import scoring
    parent = by_id.get(candidate.parent_ids[0]) if candidate.parent_ids else None
    found = scoring.verdict(candidate, parent, objective, floors) if parent is not None else None
    if found is None:
        return "-"
    where = "" if found.fidelity == "short" else f" at {found.fidelity}"
    if found.low is None:
        return f"{found.delta:+.3f}{where} ({found.interval()}): {found.word}"
    return f"{found.delta:+.3f} [{found.low:+.3f}, {found.high:+.3f}]{where} {found.word}"


def _print_floors(floors, objective) -> None:
    """The run's noise floor per rung: a difference inside it is never called better."""
    if not floors:
        console.print(f"noise floor: none measured (no baseline or random reference has two runs at a rung), so no "
                      f"single-run difference of {objective.metric} is called better or worse")
        return
    console.print("noise floor: " + "; ".join(f.text() for f in floors.values()))


def _recorded_task(run_dir: Path):
    """The task a run recorded, or None when it cannot be found here (a file task moved, a package uninstalled)."""
    from evaluators.tasks import UnknownTask, get_task
    try:
        return get_task(json.loads((run_dir / "run.json").read_text())["settings"]["task"])
    except (UnknownTask, KeyError, ValueError, OSError):
        return None


def _params(c) -> float | None:
    return c.metric("params") or c.metric("params", "check") or c.metric("params", "proxy")


def _change(c, task) -> str:
    """What a candidate changed: its search space's words for its genome (decode: its techniques), else its title."""
    from agents.spaces import task_space
    space = task_space(task) if task is not None else None
    if space is not None and space.describe is not None and c.genome:
        try:
            return space.describe(c.genome)
        except (ValueError, KeyError):          # a module the offline engine did not write (an LLM's)
            pass
    return c.title.split(": ", 1)[-1] if c.parent_ids else c.change


def _print_best(candidates, objective, floors) -> None:
    """The best candidate the run knows about (labelled with what produced it) and whether its lead is beyond the
    noise (`agents.scoring.standing`), the best proposal against the baselines, and whether it beats the best random
    reference beyond the noise floor (`agents.scoring.verdict`) or not."""
    from agents import scoring
    direction = "higher" if objective.higher_is_better else "lower"
    standing = scoring.standing(candidates, objective, floors=floors)
    if standing is None:
        console.print(f"best: none yet (no candidate has {objective.metric} at {', '.join(scoring.FIDELITIES)})")
        return
    best = standing.best
    console.print(f"best: {best.candidate.id} ({best.origin}), {objective.metric} {best.value:.3f} at {best.fidelity} "
                  f"({direction} is better)" + ("" if best.feasible else f"; over a limit: {'; '.join(best.violations)}")
                  + f"; {standing.text()}")
    proposal = scoring.best_proposal(candidates, objective)
    if proposal is None:
        console.print("best proposal: none scored yet")
        return
    baselines = scoring.baselines_text(proposal.candidate, [c for c in candidates if c.status == "baseline"],
                                       objective, floors)
    console.print(f"best proposal: {proposal.candidate.id}, {objective.metric} {proposal.value:.3f} at "
                  f"{proposal.fidelity}" + (f"; {baselines[0].lower()}{baselines[1:]}" if baselines else ""))
    # did search do something random search did not: the best proposal against the best random reference, by the
    # run's own verdict (over seeds where both have them, else the noise floor the baselines and references measured)
    references = scoring.ranked(candidates, objective, ("reference",))
    if not references:
        console.print("search vs random: no random reference was measured (loop.random_pool = 0), so this run cannot "
                      "say whether search beat random architectures")
        return
    reference = references[0].candidate
    found = scoring.verdict(proposal.candidate, reference, objective, floors)
    pool = scoring.over_random(proposal.candidate, candidates, objective)
    among = f"; better than {pool['better_than']} of {pool['pool']} random references" if pool else ""
    if found is None:
        console.print(f"search vs random: the best proposal and the best random reference {reference.id} share no "
                      "rung, so no verdict")
    elif found.better:
        console.print(f"search vs random: the best proposal {proposal.candidate.id} beats the best random reference "
                      f"{reference.id} beyond the noise floor: {found.text()}{among}")
    else:
        console.print(f"search vs random: the best proposal {proposal.candidate.id} does not beat the best random "
                      f"reference {reference.id} beyond the noise ({found.text()}){among}")


def _print_one_rung_up(candidates, objective, floors) -> None:
    """At `full` (for a ladder task such as `lm`, one rung up from `short`): whether the best proposal trained there
    keeps the lead it had at `short` over the best baseline trained there, by the run's own verdict."""
    from agents import scoring
    trained = [c for c in candidates if c.evaluations.get("full") is not None and c.evaluations["full"].ok]
    proposals = scoring.ranked(trained, objective, scoring.PROPOSALS)
    baselines = scoring.ranked(trained, objective, ("baseline",))
    if not proposals or not baselines:
        return              # nothing trained at full on both sides (loop.promote_fraction > 0 trains finalists there)
    proposal, baseline = proposals[0].candidate, baselines[0].candidate
    found = scoring.verdict(proposal, baseline, objective, floors)
    if found is None or found.fidelity != "full":
        return
    mine, theirs = proposal.metric(objective.metric, "short"), baseline.metric(objective.metric, "short")
    led = mine is not None and theirs is not None and (mine > theirs) == objective.higher_is_better and mine != theirs
    word = ("keeps its lead" if found.better else "does not keep its lead") if led else \
        ("is better" if found.better else "is not better")
    console.print(f"at full (one rung up where the task is a ladder): the best proposal {proposal.id} {word} over the "
                  f"best baseline {baseline.id}: {found.text()}")


def _print_screening(run_dir: Path) -> None:
    """The cheap score's latest rank agreement with the expensive fidelity, and the Pareto front."""
    from agents.event_types import CheapScoreReport, Promotion
    from agents.events import read_events
    events, _ = read_events(run_dir / "events.jsonl")
    tau = next((e.data for e in reversed(events) if isinstance(e.data, CheapScoreReport)), None)
    if tau is not None and tau.tau is not None:
        screened = sum(1 for e in events if isinstance(e.data, Promotion) and e.data.rung == "proxy"
                       and not e.data.promoted)
        console.print(f"cheap score vs {tau.target} ({tau.n} candidates, "
                      f"{'fitted' if tau.fitted else 'prior weights'}): Kendall tau {tau.tau:+.2f} "
                      f"in-sample, {tau.tau_loo:+.2f} leave-one-out; {screened} screened out before training")
    path = run_dir / "pareto.json"
    if path.is_file():
        try:
            fronts = json.loads(path.read_text())
        except json.JSONDecodeError:
            return
        for task, entry in fronts.items():
            objective = entry["objective"]
            points = ", ".join(f"{p['id']} ({objective['metric']} {p[objective['metric']]:.3f}, "
                               + ", ".join(f"{c} {p[c]:,.0f}" for c in objective["costs"]) + ")"
                               for p in entry["front"])
            console.print(f"Pareto front ({task}, {objective['metric']} vs {', '.join(objective['costs'])}): "
                          f"{points or 'empty'}")


@app.command("eval")
def eval_(file: Path = typer.Argument(..., help="a candidate module defining build_model(spec)"),
          task: str = typer.Option("mqar", help="task to evaluate on"),
          fidelity: str = typer.Option("check", help="check | proxy | short | full | bench"),
          sandbox: str = typer.Option("process", help="process | docker"),
          seed: int = typer.Option(0, help="training seed"),
          short_steps: int = typer.Option(None, help="training steps of the short fidelity")):
    """Evaluate one hand-written candidate and print its EvalResult as JSON (exit 0 whatever its status)."""
    from archlab.backends import make_executor
    from archlab.sandboxes import make_sandbox
    from archlab.session import job_limits
    from evaluators.harness import evaluate
    from evaluators.tasks import get_task
    from sandbox.base import SandboxUnavailable
    from wire.jobs import EvalJob
    from wire.task import FIDELITY_ORDER

    if fidelity not in FIDELITY_ORDER:
        fail(f"unknown fidelity {fidelity!r}; use check, proxy, short, full or bench")
    task_options = {"short_steps": short_steps} if short_steps is not None else None
    # one job, through the executor a run uses (warm worker, same limits), so a hand score is a loop score
    settings = _settings(None, task=task, seed=seed, sandbox__backend=sandbox, task_options=task_options,
                         executor__workers=1)
    if not file.is_file():
        fail(f"{file} is not a file")
    try:
        source = file.read_text()
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text")
    spec = get_task(settings.task).default_spec(**dict(settings.task_options)).model_copy(update={"seed": seed})
    seconds = settings.sandbox.check_seconds if fidelity == "check" else settings.sandbox.train_seconds
    job = EvalJob(job_id=f"eval-{fidelity}", candidate_id=file.stem, source=source, task=spec, fidelity=fidelity,
                  limits=job_limits(settings, seconds, settings.sandbox.gpus if fidelity != "check" else 0), seed=seed)
    try:
        executor = make_executor(settings, make_sandbox(settings))
        try:
            with tempfile.TemporaryDirectory(prefix="archlab-eval-") as tmp:
                result = executor.run(job, Path(tmp), evaluate)
        finally:
            executor.close()
    except SandboxUnavailable as exc:
        fail(f"the {sandbox} sandbox cannot run jobs: {exc}", "start the engine or use --sandbox process")
    print(result.model_dump_json(indent=2))


@app.command("lm-eval", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lm_eval_command(ctx: typer.Context):
    """Benchmark an lm candidate with EleutherAI's lm-eval harness; runs its code unsandboxed (--help: options)."""
    try:
        from archlab.lmeval import run_cli
    except ModuleNotFoundError as exc:
        fail(str(exc), "pip install -e .[lmeval]")
    raise typer.Exit(run_cli(ctx.args))


@app.command("tasks")
def tasks(ref: str = typer.Argument(None, help="one task in detail: a name, or path/to/task.py:ClassName"),
          task: Optional[list[str]] = typer.Option(None, "--task", help="a task in a file to list too "
                                                    "(path/to/task.py:ClassName); repeatable")):
    """List every task found (shipped, installed, given as a file): contract, options, offline engine."""
    from archlab import tasklist
    from evaluators.tasks import UnknownTask
    if ref is not None:
        try:
            found = tasklist.entry(ref)
        except UnknownTask as exc:
            fail(str(exc), "`archlab tasks` lists the tasks found")
        _print_task(found)
        return
    # one option a line, a long default (a path) cut short (`archlab tasks NAME` has it whole); a file's path folds
    table = Table(Column("task", overflow="fold", max_width=30), Column("origin", max_width=22), "what it is",
                  Column("metric", max_width=16), Column("a candidate defines", overflow="fold", min_width=18),
                  Column("options (default)", no_wrap=True, overflow="ellipsis", max_width=32),
                  Column("offline engine", no_wrap=True), title="tasks", show_lines=True)
    broken = []
    for found in tasklist.entries(task or ()):
        t = found.task
        if t is None:
            broken.append(found)
            table.add_row(escape(found.ref), found.origin, "[red]cannot be loaded[/] (below)", "-", "-", "-", "-")
            continue
        options = "\n".join(f"{o.name} = {o.default}" for o in tasklist.options(t)) or "none"
        table.add_row(escape(found.ref), found.origin, escape(t.summary),
                      f"{t.metric} ({'higher' if t.higher_is_better else 'lower'} is better)", escape(t.contract),
                      escape(options), tasklist.offline(t))
    console.print(table)
    for found in broken:
        console.print(f"[red]cannot be loaded:[/] {escape(found.ref)} ({found.origin}): {escape(found.error)}")
    console.print("`archlab tasks NAME` describes one task and each of its options; `archlab new-task NAME` writes "
                  "a task of your own to start from (docs/tasks.md).")


def _print_task(found) -> None:
    """One task in detail: its declarations, its options with what each means, and its description."""
    from archlab import tasklist
    t = found.task
    if t is None:
        fail(found.error, "fix the task's module (or reinstall its package); `archlab tasks` lists the others")
    console.print(f"[bold]{escape(t.name)}[/] ({found.origin}; --task {escape(found.ref)}): {escape(t.summary)}")
    others = ", ".join(m for m in t.metrics if m != t.metric)
    console.print(f"metric: {t.metric} ({'higher' if t.higher_is_better else 'lower'} is better)"
                  + (f"; an objective may name {others} instead" if others else ""))
    console.print(f"a candidate ({t.candidate_kind}) defines: {escape(t.contract)}")
    console.print(f"offline engine: {'yes' if t.search_space else 'no'}; search space {escape(tasklist.space_text(t))}")
    rows = tasklist.options(t)
    table = Table("option", "type", "default", "what it is", title=escape("options (lab.toml's [task_options])"))
    for row in rows:
        table.add_row(row.name, escape(row.type), escape(row.default), escape(row.description))
    console.print(table if rows else "options: none")
    console.print(escape(t.description()))


@app.command("new-task")
def new_task(name: str = typer.Argument(..., help="the task's name, a Python identifier; also its directory"),
             dir: Path = typer.Option(Path("."), "--dir", help="where the task's directory goes"),
             search_space: str = typer.Option("sequence-blocks", help="sequence-blocks: the offline engine can "
                                              "search it; none: only --llm openai proposes candidates")):
    """Write a working task to make your own: task.py, baseline.py, test_task.py and lab.toml in DIR/NAME."""
    from archlab.newtask import NewTaskError, write_skeleton
    try:
        skeleton = write_skeleton(name, dir, search_space)
    except NewTaskError as exc:
        fail(str(exc))
    console.print(f"wrote {skeleton.directory}: task.py (the task {skeleton.name}, class {skeleton.class_name}), "
                  "baseline.py (a candidate), test_task.py (its test), lab.toml (a small run); "
                  "docs/tasks.md walks through it")
    console.print("next:")
    for line in skeleton.next_steps():
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


@app.command("prepare-data")
def prepare_data(text: Path = typer.Option(..., "--text", help="a text file (UTF-8) to train and score on"),
                 tokenizer: str = typer.Option("byte", help="byte | bpe:VOCAB (trained here, cached) | "
                                               "path/to/tokenizer.json"),
                 out: Path = typer.Option(None, help="where the token files go (default data/<text>-<tokenizer>)"),
                 val_fraction: float = typer.Option(0.1, help="share of the text held out (its end)")):
    """Write the lm task's token files (train.bin, val.bin, meta.json) for a text file, once."""
    from archlab.prepare_data import PrepareError, prepare
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=not sys.stdout.isatty()) as bar:
        stages: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in stages:
                stages[stage] = bar.add_task(stage, total=max(1, total))
            bar.update(stages[stage], completed=done)
        try:
            directory = prepare(text, tokenizer, out, val_fraction, progress)
        except PrepareError as exc:
            fail(str(exc))
    meta = json.loads((directory / "meta.json").read_text())
    console.print(f"wrote {escape(str(directory))}: {meta['train_tokens']:,} training and {meta['val_tokens']:,} "
                  f"held-out tokens, tokenizer {escape(meta['tokenizer'])} ({meta['vocab_size']:,} ids)")
    console.print(f"next: archlab run --task lm with task_options = {{data = \"{escape(str(directory))}\"}} "
                  "in lab.toml (`archlab tasks lm` lists the options)", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    app()
