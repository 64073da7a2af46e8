"""The words the prompts are filled with, built from the same records the run stores and replays.

Task description and contract from the task and spec; candidates, parents and baselines as
short lines with their measured numbers; the measured comparison of a candidate with its
parent and the baselines (also the analyst's fallback when its model's answers are unusable).
Everything is clipped so a prompt stays a prompt.

The measured comparison says "improved" / "hurt" only by `agents.scoring.verdict` (beyond
the interval over seeds, or beyond the noise floor the run measured on its baselines), with
the interval, in the same words as `archlab show` and the review page.

For the analyst, the learning curves of candidate and parent (`curves_text`) and the run's
noise floor per rung (`noise_floor_text`); for the planner, whether the run has plateaued
(`plateau`: no new best beyond the noise floor in the last `llm.plateau_after` proposals).

Numbers are printed as valid JSON numbers (`78848`, `-0.050`, `0.8`): no thousands
separators, no leading `+`, no `%`, no `nan`. Models copy numbers from the prompt into their
JSON evidence, and a separator there makes the whole answer unparseable.
"""
from __future__ import annotations

import ast
import difflib
import math
import re
from dataclasses import dataclass

from agents import scoring
from agents.records import Candidate
from wire.task import TaskSpec
from evaluators.fitness import Objective
from evaluators.tasks import get_task, task_of
from knowledge.records import Finding

NOISE = 0.01            # the analyst prompt's rule of thumb for noise where a run measured no floor
SOURCE_CHARS = 20_000   # characters of a parent module shown in a prompt
KEY_METRICS = ("accuracy", "heldout_loss", "params")
ALIGNED_COMMENT = re.compile(r"(\S) {3,}#")   # code, then spaces aligning a trailing comment
LABELS = {"heldout_loss": "held-out loss"}


def run_objective(objective: Objective | None, task: str) -> Objective:
    """The run's objective; a caller without one (a bare engine) gets the task's own metric, higher is better."""
    if objective is not None:
        return objective
    own = get_task(task)
    return Objective(metric=own.metric, higher_is_better=own.higher_is_better)


def task_description(spec: TaskSpec, objective: Objective | None = None) -> str:
    doc = task_of(spec).description()
    objective = run_objective(objective, spec.ref or spec.name)
    direction = "higher" if objective.higher_is_better else "lower"
    return (f"{doc.strip()}\n\nQuality metric: {objective.metric} ({direction} is better), "
            f"measured on held-out data.").strip()


def task_summary(spec: TaskSpec) -> str:
    """The task description's first sentence: what a literature query should be about."""
    return " ".join(task_description(spec).split("\n\n", 1)[0].split())


def number(value: float | None, pattern: str = ".3f") -> str:
    """A number as JSON writes it: '-' when missing or not finite; 'int' for whole numbers, never with separators."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    if pattern == "int":
        return str(int(round(value)))
    return format(value, pattern)


def metrics_line(candidate: Candidate, objective: Objective | None = None) -> str:
    result = candidate.evaluations.get("short")
    if result is not None and result.ok:
        metric = run_objective(objective, candidate.task).metric
        shown = [metric] + [k for k in KEY_METRICS if k != metric]        # the objective's metric first
        extra = {k: v for k, v in result.metrics.items() if k not in shown}
        line = ", ".join(f"{k if k == metric else LABELS.get(k, k)} "
                         f"{number(candidate.metric(k), 'int' if k == 'params' else '.3f')}" for k in shown)
        if extra:
            line += "; " + ", ".join(f"{k} {number(v, '.4g')}" for k, v in sorted(extra.items())[:8])
        full = candidate.evaluations.get("full")
        if full is not None and full.ok and f"{metric}_ci_low" in full.metrics:
            line += (f"; full: {metric} {number(full.metrics.get(metric))} (95 percent interval "
                     f"{number(full.metrics[f'{metric}_ci_low'])} to {number(full.metrics[f'{metric}_ci_high'])}, "
                     f"{int(full.metrics.get('seeds', 0))} seeds)")
        return line
    if candidate.status == "screened":
        return candidate.analysis or "screened out before training by the cheap score"
    last = list(candidate.evaluations.values())[-1] if candidate.evaluations else None
    if last is None:
        return "not evaluated"
    return f"{last.fidelity}: {last.status}: {first_line(last.message)}"


def first_line(text: str, limit: int = 300) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "")[:limit]


def candidate_line(c: Candidate, objective: Objective | None = None) -> str:
    parent = c.parent_ids[0] if c.parent_ids else "scratch"
    return f"- {c.id} from {parent} [{c.change or '-'}] {c.title}: {metrics_line(c, objective)}"


def best_first(candidates: list[Candidate], objective: Objective | None) -> list[Candidate]:
    """Scored candidates best first by the objective (`agents.scoring`), then the unscored in their order."""
    if not candidates:
        return []
    ranked = [s.candidate for s in scoring.ranked(candidates, run_objective(objective, candidates[0].task))]
    ids = {c.id for c in ranked}
    return ranked + [c for c in candidates if c.id not in ids]


def baselines_text(candidates: list[Candidate], objective: Objective | None = None) -> str:
    baselines = best_first([c for c in candidates if c.status == "baseline"], objective)
    lines = [f"- {c.id} ({c.title}): {metrics_line(c, objective)}" for c in baselines]
    return "\n".join(lines) or "(none)"


def best_so_far_text(candidates: list[Candidate], objective: Objective | None = None, k: int = 5) -> str:
    """The `k` best proposals and random references, labelled (the baselines are listed on their own), and the gene
    values the run's evidence associates with quality (`agents.search.GeneModel`, fitted on every evaluation that has a genome)."""
    from agents import search
    if not candidates:
        return "(nothing measured yet)"
    objective = run_objective(objective, candidates[0].task)
    # the baselines have their own section: repeating them here only invites a small model to copy the line
    top = [s for s in scoring.ranked(candidates, objective, scoring.PARENTS) if s.candidate.status != "baseline"][:k]
    lines = [f"- {s.candidate.id} ({s.origin}; {s.candidate.title}): {metrics_line(s.candidate, objective)}"
             for s in top]
    traits = search.describe_traits(search.GeneModel.fit(search.observations(candidates, objective)))
    return "\n".join(lines + ([traits] if traits else [])) or "(only the baselines above so far)"


def findings_text(findings: list[tuple[Finding, float]]) -> str:
    lines = [f"- [{f.id}] ({f.kind}, distance {d:.2f}) {f.text[:600]}" for f, d in findings]
    return "\n".join(lines) or "(none yet)"


def principles_text(principles: list) -> str:
    lines = [f"- [{p.id}] {p.principle}" for p, _ in principles]
    return "\n".join(lines) or "(no literature base attached)"


def failures_text(candidates: list[Candidate], limit: int = 5) -> str:
    failed = [c for c in candidates if c.status in ("failed", "rejected", "screened")][-limit:]
    return "\n".join(candidate_line(c) for c in failed) or "(none)"


def tried_text(candidates: list[Candidate], limit: int = 25, objective: Objective | None = None) -> str:
    """Every proposal so far, best first by the objective, then those without a score; at most `limit`."""
    tried = best_first([c for c in candidates if c.status not in ("baseline", "reference")], objective)[:limit]
    return "\n".join(candidate_line(c, objective) for c in tried) or "(nothing yet: this is the first proposal)"


def clip_source(source: str, limit: int = SOURCE_CHARS) -> str:
    return source if len(source) <= limit else source[:limit] + f"\n# ... {len(source) - limit} more characters"


def compact_source(source: str, limit: int = SOURCE_CHARS) -> str:
    """The module without docstrings, comment-only lines and runs of blank lines, for reading, not running.

    Trailing comments (shape notes) stay, without the spaces that align them. A module that does not
    parse is shown as it is.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return clip_source(source, limit)
    drop: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            drop.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    lines, blank = [], False
    for number, line in enumerate(source.splitlines(), start=1):
        if number in drop or line.lstrip().startswith("#"):
            continue
        if not line.strip():
            if blank or not lines:
                continue
            blank = True
        else:
            blank = False
        lines.append(ALIGNED_COMMENT.sub(r"\1  #", line.rstrip()))
    return clip_source("\n".join(lines).strip("\n") + "\n", limit)


def diff_text(before: str, after: str, limit: int = 6_000) -> str:
    """A unified diff from `before` (the parent) to `after` (the candidate), one line of context."""
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), "parent", "candidate", n=1,
                                      lineterm=""))
    text = "\n".join(lines) or "(no difference)"
    return text if len(text) <= limit else text[:limit] + f"\n... {len(text) - limit} more characters of diff"


def measured(candidate: Candidate, parent: Candidate | None, baselines: list[Candidate],
             objective: Objective | None = None) -> tuple[str, dict[str, float]]:
    """The measured comparison in words, and the numbers as evidence; nothing a model could invent. Compared by the
    run's objective (`agents.scoring.compare`: its metric, at the most expensive fidelity both sides finished)."""
    if candidate.status in ("failed", "rejected"):
        last = list(candidate.evaluations.values())[-1] if candidate.evaluations else None
        why = f"{last.fidelity} ended with status {last.status}: {first_line(last.message)}" if last else "no result"
        return f"{candidate.id} failed: {why}.", {}
    objective = run_objective(objective, candidate.task)
    metric = objective.metric
    shown = [metric] + [k for k in KEY_METRICS if k != metric]
    values = {k: candidate.metric(k) for k in shown}
    evidence = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}
    parts = [f"{candidate.id}: " + ", ".join(f"{LABELS.get(k, k)} {number(v, 'int' if k == 'params' else '.3f')}"
                                             for k, v in values.items()) + "."]
    floors = scoring.noise_floors(baselines, objective)      # the baselines' seeds: the run's noise floor
    compared = scoring.verdict(candidate, parent, objective, floors) if parent is not None else None
    if compared is not None:
        evidence.update({f"parent_{metric}": compared.other, f"delta_{metric}": compared.delta})
        if compared.floor is not None:
            evidence[f"floor_{metric}"] = compared.floor
        line = (f"Against its parent {parent.id} ({metric} {number(compared.other)} at {compared.fidelity}): "
                f"{compared.text(plain=True)}; the change {compared.trend()}")
        loss, p_loss = candidate.metric("heldout_loss"), parent.metric("heldout_loss")
        if metric != "heldout_loss" and loss is not None and p_loss is not None:
            evidence["delta_loss"] = loss - p_loss
            line += f"; held-out loss {number(p_loss)} -> {number(loss)}"
        params, p_params = candidate.metric("params"), parent.metric("params")
        if params and p_params:
            line += (f"; parameters {number(p_params, 'int')} -> {number(params, 'int')} "
                     f"(ratio {number(params / p_params, '.3f')})")
        parts.append(line + ".")
    parts += [line for line in [scoring.baselines_text(candidate, baselines, objective, floors)] if line]
    return " ".join(parts), evidence


# --- what the analyst and the planner are told about the run's dynamics ------------------------------------------
CURVE_SHOWN = 8         # points of a learning curve printed in a prompt


def curve_line(candidate: Candidate, fidelity: str = "short") -> str:
    """The training loss curve of one evaluation in words: a few (step, loss) points and how its end moves.

    Empty when that evaluation recorded no curve. The steps come from `evaluators.fidelities.curve_steps` (where the
    runner sampled the curve); the end's trend compares the last quarter of the points with the point before it.
    """
    from evaluators.fidelities import curve_steps
    result = candidate.evaluations.get(fidelity)
    curve = [v for v in (result.curve if result is not None else []) if isinstance(v, (int, float))]
    if len(curve) < 2:
        return ""
    total = int(result.metrics.get("steps", 0) or 0) if result is not None else 0
    steps = curve_steps(total, len(curve)) if total else [float(i + 1) for i in range(len(curve))]
    picks = sorted({round(i * (len(curve) - 1) / (CURVE_SHOWN - 1)) for i in range(CURVE_SHOWN)})
    points = ", ".join(f"{number(curve[i])} at step {int(steps[i])}" for i in picks)
    quarter = max(1, len(curve) // 4)
    before, last = curve[-quarter - 1], curve[-1]
    if not (math.isfinite(before) and math.isfinite(last)):
        trend = "it is not finite at the end (training diverged)"
    else:
        drop = before - last
        share = drop / abs(before) if before else 0.0
        trend = (f"the last quarter of training lowered it by {number(drop)} ({number(100 * share, '.1f')} percent): "
                 + ("still falling, more steps would likely help" if share > 0.03 else
                    "flat at the end" if share > -0.01 else "rising at the end (unstable or overfitting)"))
    return f"{candidate.id} at {fidelity} (training loss, {len(curve)} points): {points}; {trend}"


def curves_text(candidate: Candidate, parent: Candidate | None) -> str:
    """The candidate's learning curve and its parent's, for the analyst; a line saying so when none was recorded."""
    lines = [line for line in (curve_line(candidate), curve_line(parent) if parent is not None else "") if line]
    return "\n".join(f"- {line}" for line in lines) or "(no learning curve was recorded)"


def noise_floor_text(floors: dict[str, scoring.Floor]) -> str:
    """The run's measured noise floor per rung, in the words `archlab show` uses; a line saying so when none."""
    lines = [f"- {floor.text()}" for floor in floors.values()]
    return "\n".join(lines) or (f"(this run measured no noise floor; treat differences below about {NOISE} of the "
                                "metric as noise)")


@dataclass(frozen=True)
class Plateau:
    """The run's best has not moved beyond the noise floor for `since` proposals."""
    best_id: str
    metric: str
    value: float
    fidelity: str
    since: int
    floor: float | None

    def text(self) -> str:
        beyond = f"beyond the noise floor (±{number(self.floor, '.4f')})" if self.floor is not None else "at all"
        return (f"The run has plateaued: none of the last {self.since} proposals improved on the best, "
                f"{self.best_id} ({self.metric} {number(self.value, '.4f')} at {self.fidelity}), {beyond}. "
                "Small tweaks are not moving the metric: propose a larger step this time (another mixer or "
                "mechanism, a change of depth or width, several genes at once, or a combination of what worked).")


def plateau(candidates: list[Candidate], objective: Objective | None, after: int) -> Plateau | None:
    """A `Plateau` when the last `after` proposals (in id order, failed and screened ones included) brought no new best
    beyond the noise floor (`agents.scoring.takes_lead`: the order `archlab show` ranks by, and a verdict beyond the
    floor at the same rung; where the run measured no floor at that rung, ranking above the best is enough); None
    otherwise, or before `after` proposals."""
    if not candidates:
        return None
    objective = run_objective(objective, candidates[0].task)
    floors = scoring.noise_floors(candidates, objective)
    proposals = sorted((c for c in candidates if c.status not in ("baseline", "reference")), key=lambda c: c.id)
    incumbent = scoring.best([c for c in candidates if c.status in ("baseline", "reference")], objective)
    since = 0
    for candidate in proposals:
        found = scoring.score(candidate, objective) if candidate.status in scoring.PROPOSALS else None
        if found is not None and (incumbent is None or leads(found, incumbent, objective, floors)):
            incumbent, since = found, 0
        else:
            since += 1
    if incumbent is None or since < after:
        return None
    floor = floors.get(incumbent.fidelity)
    return Plateau(incumbent.candidate.id, objective.metric, incumbent.value, incumbent.fidelity, since,
                   floor.value if floor is not None else None)


def leads(challenger: scoring.Score, incumbent: scoring.Score, objective: Objective,
          floors: dict[str, scoring.Floor]) -> bool:
    """Whether `challenger` is a new best: beyond the noise floor where the rung has one, else by rank alone (a run
    without a floor must not read as plateaued forever because no difference can be called real)."""
    if incumbent.fidelity in floors or challenger.fidelity in floors:
        return scoring.takes_lead(challenger, incumbent, objective, floors)
    return challenger.key() > incumbent.key()
