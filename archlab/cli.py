"""The `archlab` command: run, resume, runs, show, eval.

The CLI decides what people see: progress bars, tables and error messages that say what to
do next. Library code below it never prints.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from archlab.runstore import RunNotFound, find_run, list_runs
from archlab.settings import Settings, SettingsError, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="archlab: an autonomous research lab for neural architectures.")
console = Console()
errors = Console(stderr=True)


def fail(message: str, hint: str = "") -> None:
    errors.print(f"[bold red]error:[/] {message}")
    if hint:
        errors.print(f"[yellow]next:[/] {hint}")
    raise typer.Exit(2)


def _settings(config: Optional[Path], **flags) -> Settings:
    try:
        return load_settings(config, **flags)
    except SettingsError as exc:
        fail(str(exc), "fix the setting and run again; `archlab run --help` lists them")


@app.command()
def run(task: str = typer.Option(None, help="task to research (mqar)"),
        rounds: int = typer.Option(None, help="rounds after the baselines"),
        sandbox: str = typer.Option(None, help="process | docker"),
        llm: str = typer.Option(None, help="offline | openai"),
        seed: int = typer.Option(None, help="seed for the engine and training"),
        runs_dir: Path = typer.Option(None, help="where run directories go (default runs/)"),
        short_steps: int = typer.Option(None, help="training steps of the short fidelity"),
        config: Path = typer.Option(None, help="a TOML settings file")):
    """Start a research run and drive it to the end of its round budget."""
    task_options = {"short_steps": short_steps} if short_steps is not None else None
    settings = _settings(config, task=task, rounds=rounds, seed=seed, runs_dir=runs_dir,
                         sandbox__backend=sandbox, llm__backend=llm, task_options=task_options)
    from archlab.session import start_run
    run_id, run_dir = start_run(settings)
    console.print(f"run [bold]{run_id}[/] in {run_dir}")
    _drive(settings, run_id, run_dir, resume=False)


@app.command()
def resume(run: str = typer.Argument(..., help="run id, prefix or directory"),
           runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """Continue a run from its last checkpoint."""
    run_dir = _find(runs_dir, run)
    record = json.loads((run_dir / "run.json").read_text())
    try:
        settings = Settings(**record["settings"])
    except ValueError as exc:
        fail(f"{run_dir}/run.json holds settings this version cannot load: {exc}")
    console.print(f"resuming run [bold]{record['run_id']}[/] in {run_dir}")
    _drive(settings, record["run_id"], run_dir, resume=True)


def _drive(settings: Settings, run_id: str, run_dir: Path, resume: bool) -> None:
    from agents.engine import EngineUnavailable
    from archlab.session import drive, open_lab
    from sandbox.base import SandboxUnavailable

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} rounds"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("baselines", total=settings.rounds)

        def on_stage(round: int, stage: str) -> None:
            progress.update(bar, completed=max(0, round - 1), description=f"round {round}/{settings.rounds} · {stage}"
                            if round else f"round 0 · {stage}")
        try:
            with open_lab(settings, run_id, run_dir, on_stage) as lab:
                drive(lab, resume=resume)
        except SandboxUnavailable as exc:
            fail(f"the {settings.sandbox.backend} sandbox cannot run jobs: {exc}",
                 "start the engine or use --sandbox process; then `archlab resume " + run_id + "`")
        except EngineUnavailable as exc:
            fail(str(exc))
        progress.update(bar, completed=settings.rounds, description="done")
    _print_table(run_dir)
    console.print(f"run written to [bold]{run_dir}[/]")


def _find(runs_dir: Path, run: str) -> Path:
    try:
        return find_run(runs_dir, run)
    except RunNotFound as exc:
        fail(str(exc))


@app.command()
def runs(runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """List runs with their best candidate."""
    table = Table("run", "task", "state", "candidates", "best", "accuracy")
    for summary in list_runs(runs_dir):
        best = summary.best
        table.add_row(summary.run_id, summary.task, summary.state, str(summary.candidates),
                      best.id if best else "-", f"{best.metric('accuracy'):.3f}" if best else "-")
    console.print(table)


@app.command()
def show(run: str = typer.Argument(..., help="run id, prefix or directory"),
         runs_dir: Path = typer.Option(Path("runs"), help="where run directories are")):
    """The candidate table of a run."""
    run_dir = _find(runs_dir, run)
    _print_table(run_dir)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _print_table(run_dir: Path) -> None:
    from agents.recorder import load_candidates
    table = Table("id", "parent", "change", "accuracy", "loss", "params", "status", title=f"candidates of {run_dir.name}")
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for c in load_candidates(run_dir):
        change = c.title.split(": ", 1)[-1] if c.parent_ids else "baseline"
        params = c.metric("params") or c.metric("params", "check")
        table.add_row(c.id, ", ".join(c.parent_ids) or "-", change, _fmt(c.metric("accuracy"), ".3f"),
                      _fmt(c.metric("heldout_loss"), ".3f"), _fmt(params, ",.0f"), c.status)
    console.print(table)


@app.command("eval")
def eval_(file: Path = typer.Argument(..., help="a candidate module defining build_model(spec)"),
          task: str = typer.Option("mqar", help="task to evaluate on"),
          fidelity: str = typer.Option("check", help="check | short"),
          sandbox: str = typer.Option("process", help="process | docker"),
          seed: int = typer.Option(0, help="training seed"),
          short_steps: int = typer.Option(None, help="training steps of the short fidelity")):
    """Evaluate one hand-written candidate and print its EvalResult as JSON (exit 0 whatever its status)."""
    from archlab.session import job_limits, make_sandbox
    from evaluators.harness import evaluate
    from evaluators.tasks import get_task
    from sandbox.base import SandboxUnavailable
    from sandbox.contract import EvalJob

    if fidelity not in ("check", "short", "full"):
        fail(f"unknown fidelity {fidelity!r}; use check, short or full")
    task_options = {"short_steps": short_steps} if short_steps is not None else None
    settings = _settings(None, task=task, seed=seed, sandbox__backend=sandbox, task_options=task_options)
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
        box = make_sandbox(settings)
        with tempfile.TemporaryDirectory(prefix="archlab-eval-") as tmp:
            result = evaluate(box, job, Path(tmp))
    except SandboxUnavailable as exc:
        fail(f"the {sandbox} sandbox cannot run jobs: {exc}", "start the engine or use --sandbox process")
    print(result.model_dump_json(indent=2))


if __name__ == "__main__":
    app()
