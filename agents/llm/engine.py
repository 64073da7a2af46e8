"""The `openai` research engine: planner, coder and analyst are models behind an OpenAI-compatible endpoint.

- planner: sees the task and contract, the parent (code without docstrings and comment lines,
  numbers, analysis), the baselines,
  the nearest findings, the nearest literature principles, recent failures and everything
  tried; answers a `PlanAnswer`. A proposal within `novelty_threshold` of an earlier one is
  sent back with the earlier one shown, up to `novelty_retries` times, then kept (logged).
- planner, where the task declares a search space with a renderer (`agents.llm.space`): also
  sees the parent's genome and the changes the space's catalogue allows, and may name one
  (`space_change`); a change the space refuses goes back with the reason (on the last repair
  the plan in words is taken without it, for the coder to write). When the run has
  plateaued (no new best beyond the noise floor in `plateau_after` proposals) it is told so
  and asked for a larger step (a `plateau` event).
- coder: a plan naming a space change is rendered by the space (no call). Otherwise it gets
  the plan and the parent's module and answers SEARCH/REPLACE edits (`agents.llm.edits`;
  `coder_answer = "edits"`), which the engine applies; edits that do not apply go back with
  the reason per block (`edit_failed`), up to `edit_attempts` times, and then the whole module
  is asked for (the only form with `coder_answer = "module"`). A `code_answer` event says
  which form was used. A module identical to an evaluated candidate's (the parent's,
  usually) is sent back the same bounded number of times.
- fixer: the coder again, with the contract, the plan, the failed check's message and log
  tail, the failing module and its diff from the parent; edits the failing module (or
  rewrites it, as the coder); returns the new module, or None (the graph records that it gave up).
- analyst: gets the measured comparison with parent and baselines, both learning curves and
  the run's noise floor; answers an `AnalysisAnswer`. Its findings carry the measured numbers as evidence, never only the model's.

Bad answers (empty, refusal, no code, truncated or wrong-schema JSON) go back to the model
with the problem named, up to `repair_attempts` times per call. Then: plan raises
`UnexpectedModelBehavior` (a `ProposalFailed`: the graph ends that branch, the run goes on); code returns a module whose
`build_model` raises with the reason (the check rejects it, the fix loop gets one more
chance); fix returns None; analyze falls back to the measured comparison. Endpoint faults are
`agents.llm.client`'s business. Every answer is accounted for in the log: an unusable one by
an `llm_error` of kind `unusable_answer` (the problem sent back), a copy by `duplicate_code` or
`novelty_rejected`, and the one taken by what the graph records next (plan, code, fix, analysis).

Where a role lists several models, the planner's turn first chooses which model serves the
new candidate in each such role (`agents.llm.routing`, logged as `models_chosen`); the plan
carries the choice (`Plan.models`, then `Candidate.models`) to the coder, the fixer and the
analyst, and every call names the candidate it serves (`candidate_id` in its events).

Stateless across calls and threads: everything a call needs comes from its arguments (the
plan, the parent and candidate records, the failed result, the spec) or, when an older
caller leaves them out, from the run it is attached to (its records and spec); nothing of
one call is kept on `self` (the router's ledger is the log's calls, read again on attach), so a fresh engine after `archlab resume` behaves like the old
one, and candidates of a round can be drafted from several threads at once. The structured-
output step that works per model is the client's, re-derived from the event log on attach.
`preflight()` checks key, endpoint and models with one cheap request before any job.
"""
from __future__ import annotations

import ast
import json
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from agents import scoring
from agents.engine import EngineUnavailable, PlanContext
from agents.event_types import (CodeAnswer, DuplicateCode, EditFailed, LLMError, NoveltyRejected,
                                PlateauNotice, PrinciplesRetrieved)
from agents.llm import context as ctx
from agents.llm.answers import AnalysisAnswer, PlanAnswer, SpacePlanAnswer, read_json, read_module
from agents.llm.edits import apply_edits, count_markers, has_markers, read_edits
from agents.llm.space import menu_for, renderer_for
from agents.llm.client import LLMClient, MemoryEvents, Reply, clip
from agents.llm.errors import LLMConfigError, UnexpectedModelBehavior
from agents.llm.preflight import check_endpoint
from agents.llm.routing import Ledger, Router
from agents.llm.prompts import render, user_text
from agents.records import Candidate, Plan, source_hash
from wire.task import TaskSpec
from knowledge.embedders import HashingEmbedder
from knowledge.literature import Literature
from evaluators.tasks import task_of
from knowledge.novelty import Earlier, NoveltyCheck
from knowledge.records import Finding
from wire.jobs import EvalResult

if TYPE_CHECKING:
    from agents.llm.settings import LLMSettings
    from evaluators.fitness import Objective

# the planner's answer field for a change of the task's search space (shown only where there is one)
SPACE_FIELD = (',\n "space_change": [{"gene": "<a gene of the search space shown below>", "value": <its new value>}] '
               'or [] for a change outside the space')
ECHO_CHARS = 12_000          # characters of a rejected answer echoed back to the model
LOG_TAIL_CHARS = 3_000       # characters of a failed check's log shown to the fixer
UNUSABLE_MARK = "# archlab: no usable module"
UNUSABLE_MODULE = '''{mark}
"""The coder model's answers could not be used; this stand-in fails its check on purpose.

Reason: {reason}
"""


def build_model(spec):
    raise RuntimeError({message!r})
'''


class OpenAIEngine:
    name = "openai"

    def __init__(self, llm: "LLMSettings", seed: int, api_key: str, http_client: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.llm = llm
        self.seed = seed
        self.client = LLMClient(llm, api_key, MemoryEvents(), seed=seed, http_client=http_client, sleep=sleep)
        self.router = Router(llm, self.client.pricing)   # several models for a role: which serves a candidate
        self.ledger = Ledger()                           # what each candidate's calls cost, read from the log
        self.novelty = NoveltyCheck(HashingEmbedder(), llm.novelty_threshold)
        self.literature: Literature | None = None
        self.run: Any = None            # the attached run (records, spec, events): read, never written per call
        self.objective: "Objective | None" = None      # the run's, from attach; None: the task's own metric

    @classmethod
    def from_settings(cls, settings: Any, seed: int, http_client: Any = None) -> "OpenAIEngine":
        llm = settings.llm
        key = llm.api_key()
        if key is None:
            if not llm.base_url:
                raise LLMConfigError(f"the openai backend needs an API key: export {llm.api_key_env}=... "
                                     f"(llm.api_key_env names the variable), or point llm.base_url at a local "
                                     f"server such as vLLM or Ollama")
            key = "none"                                  # local servers ignore it; the client insists on one
        return cls(llm, seed, key, http_client=http_client)

    def attach(self, lab: Any) -> None:
        """Log to the run's event log, use its knowledge store, and take up what earlier sessions learned.

        The structured-output fallbacks an earlier session logged are restored from the log,
        so a resumed run does not probe `json_schema` again where it was refused.
        """
        buffered = self.client.events
        self.client.events = lab.events
        if isinstance(buffered, MemoryEvents):
            for data in buffered.events:
                lab.events.emit(data)
        self.client.restore_formats(getattr(lab.events, "history", []))
        self.ledger = Ledger()                           # read again from the run's log, earlier sessions included
        self.novelty = NoveltyCheck(lab.store.embedder, self.llm.novelty_threshold)
        self.literature = Literature(lab.store)
        self.objective = getattr(lab, "objective", None)  # what the prompts rank and print candidates by
        self.run = lab

    # --- preflight -----------------------------------------------------------------------
    def preflight(self) -> None:
        """One cheap look at key, endpoint and each distinct model before the first job (`agents.llm.preflight`)."""
        check_endpoint(self.client, self.llm)

    # --- planner -------------------------------------------------------------------------
    def plan(self, context: PlanContext) -> Plan:
        parent, spec = context.parent, context.spec
        models = self._route(context)
        planner = models.get("planner") or self.client.model_for("planner")
        principles = self._principles(f"{ctx.task_summary(spec)} Changes to {parent.title}. {parent.analysis}",
                                      context.round)
        objective = self.objective
        menu = menu_for(context, self.seed) if self.llm.space_changes else None
        schema = menu.answer_schema() if menu is not None else PlanAnswer
        stuck = ctx.plateau(context.candidates, objective, self.llm.plateau_after)
        if stuck is not None:
            self.client.emit(PlateauNotice(round=context.round, parent_id=parent.id, best_id=stuck.best_id,
                                           proposals=stuck.since, floor=stuck.floor))
        messages = render("planner", task=spec.name, task_description=ctx.task_description(spec, objective),
                          contract=task_contract(spec, coder=False), parent_id=parent.id, parent_title=parent.title,
                          parent_metrics=ctx.metrics_line(parent, objective),
                          parent_analysis=parent.analysis or "(none yet)", parent_source=ctx.compact_source(parent.source),
                          baselines=ctx.baselines_text(context.candidates, objective),
                          best_so_far=ctx.best_so_far_text(context.candidates, objective),
                          findings=ctx.findings_text(context.findings), principles=ctx.principles_text(principles),
                          failures=ctx.failures_text(context.candidates),
                          tried=ctx.tried_text(context.candidates, objective=objective),
                          plateau=f"\n# The run has plateaued\n\n{stuck.text()}\n" if stuck is not None else "",
                          space=f"\n{menu.text()}\n" if menu is not None else "",
                          space_field=SPACE_FIELD if menu is not None else "",
                          round=context.round)
        earlier = [Earlier(c.id, proposal_text(c.title, c.motivation)) for c in context.candidates
                   if c.status != "baseline"]
        repairs = duplicates = 0
        while True:
            reply = self.client.chat("planner", messages, schema, purpose="plan", model=planner,
                                     candidate_id=context.candidate_id)
            answer, problem = read_json(reply.text, schema, reply.finish_reason)
            genome, dropped = None, ""
            if answer is not None and isinstance(answer, SpacePlanAnswer) and answer.space_change and menu is not None:
                genome, problem = menu.apply([(g.gene, g.value) for g in answer.space_change])
                if genome is None and repairs < self.llm.repair_attempts:
                    answer = None
                elif genome is None:   # the last chance: the plan in words still stands, for the coder to write
                    dropped = f" (its space_change was dropped: {problem})"
            if answer is None:
                repairs += 1
                problem = with_note(problem, reply)
                self._unusable("planner", reply, problem, repairs)
                if repairs > self.llm.repair_attempts:
                    raise UnexpectedModelBehavior(
                        f"the planner model {planner!r} gave no usable plan in {repairs} answers "
                        f"(last problem: {problem}); try a stronger llm.planner_model or another "
                        f"llm.structured_outputs setting, then `archlab resume RUN`")
                messages = self._follow_up(messages, reply.text, user_text(
                    "repair", problem=problem, instruction="Answer again with the JSON object only, every field filled."))
                continue
            note = ""
            # a named change of the space is checked for repeats exactly (its genome); words by their meaning
            verdict = self.novelty.judge(proposal_text(answer.title, answer.hypothesis), earlier if genome is None else [])
            if not verdict.novel and verdict.nearest is not None:
                duplicates += 1
                kept = duplicates > self.llm.novelty_retries
                self.client.emit(NoveltyRejected(round=context.round, parent_id=parent.id, title=answer.title,
                                                 nearest_id=verdict.nearest.id, similarity=round(verdict.similarity, 4),
                                                 threshold=self.llm.novelty_threshold, kept=kept))
                if not kept:
                    messages = self._follow_up(messages, reply.text, user_text(
                        "novelty", similarity=f"{verdict.similarity:.3f}", threshold=f"{self.llm.novelty_threshold:g}",
                        nearest_id=verdict.nearest.id, nearest_text=verdict.nearest.text))
                    continue
                note = f" (close to {verdict.nearest.id}, kept after {self.llm.novelty_retries} retries)"
            if genome is not None and menu is not None:
                changed = ", ".join(f"{g}={json.dumps(genome[g])}" for g in sorted(genome) if genome[g] != menu.genome.get(g))
                note += f" (space change: {changed})"
            title = answer.title.removeprefix(f"{parent.id}:").strip() or answer.title
            return Plan(title=f"{parent.id}: {title}", motivation=answer.hypothesis, change=answer.change_kind,
                        detail=answer.change + note + dropped, expected=answer.expected_effect, parent_id=parent.id,
                        genome=genome, retrieved=[f.id for f, _ in context.findings], models=models)

    def _route(self, context: PlanContext) -> dict[str, str]:
        """The models chosen to serve this candidate, for the roles that list several (`agents.llm.routing`);
        logged as `models_chosen`."""
        if not self.router.active:
            return {}
        events = self.client.events
        self.ledger.read(getattr(events, "history", None) or getattr(events, "events", []))
        chosen = self.router.choose(context, self.ledger,
                                    ctx.run_objective(context.objective or self.objective, context.spec.name))
        self.client.emit(chosen)
        return dict(chosen.models)

    def _principles(self, query: str, round: int) -> list:
        if self.literature is None or self.llm.principles_k == 0:
            return []
        found = self.literature.nearest(query, k=self.llm.principles_k)
        self.client.emit(PrinciplesRetrieved(round=round, ids=[p.id for p, _ in found],
                                             distances=[round_to(d) for _, d in found]))
        return found

    # --- coder and fixer -----------------------------------------------------------------
    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec, *,
             candidates: list[Candidate] | None = None) -> str:
        """The new module. `candidates` (default: the attached run's records) are the modules a copy is checked against.

        A plan that names a change of the task's search space (`plan.genome`) is rendered, with no coder call.
        Otherwise the coder edits the parent (`llm.coder_answer = "edits"`), or writes the whole module: at once
        (`"module"`), or when its edits did not apply after `llm.edit_attempts` answers sent back with the reason.
        """
        if plan.genome and (found := renderer_for(spec)) is not None:
            source = found[1](plan.genome, title=plan.title)
            self.client.emit(CodeAnswer(purpose="code", call_id="", form="space", edits=0, failed=0,
                                        fallback=False))
            return source
        evaluated = {c.source_hash: c.id for c in (candidates if candidates is not None else self._records())
                     if c.source_hash}
        evaluated.setdefault(parent.source_hash, parent.id)
        fallback = False
        if self.llm.coder_answer == "edits":
            messages = render("coder_edits", contract=task_contract(spec), title=plan.title,
                              motivation=plan.motivation, change=plan.change, detail=plan.detail,
                              expected=plan.expected, parent_id=parent.id, parent_source=parent.source)
            edited, _, _ = self._edited(messages, parent.source, "code", plan, task_of(spec).entry,
                                        evaluated=evaluated)
            if edited is not None:
                return edited
            fallback = True
        messages = render("coder", contract=task_contract(spec), title=plan.title, motivation=plan.motivation,
                          change=plan.change, detail=plan.detail, expected=plan.expected, parent_id=parent.id,
                          parent_source=ctx.clip_source(parent.source))
        written, problem, _ = self._module(messages, "code", plan, evaluated=evaluated, fallback=fallback)
        if written is None:
            return unusable_module(f"the coder model {self._model('coder', plan.models)!r} gave no usable module: "
                                   f"{problem}")
        return written

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, *, parent: Candidate | None = None,
            spec: TaskSpec | None = None, candidates: list[Candidate] | None = None) -> tuple[Plan, str] | None:
        """A repaired (plan, module), or None to give up.

        `parent` and `spec` should be passed; when they are not (an older caller), they are
        read from the attached run: the parent's record by `plan.parent_id`, the run's spec.
        The fixer edits the failing module as the coder edits the parent (`llm.coder_answer`),
        with the whole module as the fallback. A repaired module no longer is the plan's
        genome rendered, so the returned plan carries none.
        """
        parent = parent if parent is not None else self._record(plan.parent_id)
        spec = spec if spec is not None else getattr(self.run, "spec", None)
        if source.startswith(UNUSABLE_MARK):           # nothing to repair: ask for the module again
            if parent is None or spec is None:       # nothing to write it from: the graph records the give-up
                return None
            fresh = self.code(plan.model_copy(update={"genome": None}), parent, spec, candidates=candidates)
            return None if fresh.startswith(UNUSABLE_MARK) else (plan.model_copy(update={"genome": None}), fresh)
        contract = task_contract(spec) if spec else "(the task contract was not given)"
        values = dict(attempt=attempt, status=failure.status, message=failure.message or "(no message)",
                      log_tail=failure.log_tail[-LOG_TAIL_CHARS:] or "(empty)", source=ctx.clip_source(source),
                      title=plan.title, change=plan.change or "-", detail=plan.detail or "-",
                      parent_id=parent.id if parent else plan.parent_id or "(unknown)",
                      parent_diff=ctx.diff_text(parent.source, source) if parent else "(the parent was not available)")
        blank = dict(title="", motivation="", change="", detail="", expected="", parent_id="", parent_source="")
        fixed = None
        fallback = False
        if self.llm.coder_answer == "edits":
            system = render("coder_edits", contract=contract, **blank)[0]
            fixed, problem, reply_text = self._edited([system, *render("fixer_edits", **values)], source,
                                                      f"fix {attempt}", plan,
                                                      task_of(spec).entry if spec else "build_model",
                                                      failing_hash=source_hash(source))
            fallback = fixed is None
        if fixed is None:
            system = render("coder", contract=contract, **blank)[0]
            fixed, problem, reply_text = self._module([system, *render("fixer", **values)], f"fix {attempt}", plan,
                                                      failing_hash=source_hash(source), fallback=fallback)
        if fixed is None:
            return None
        note = fix_note(reply_text) or f"repaired after {failure.status}"
        return plan.model_copy(update={"detail": f"{plan.detail}; fix {attempt}: {note}", "genome": None}), fixed

    def _records(self) -> list[Candidate]:
        recorder = getattr(self.run, "recorder", None)
        return recorder.load_all() if recorder is not None else []

    def _record(self, candidate_id: str) -> Candidate | None:
        recorder = getattr(self.run, "recorder", None)
        if recorder is None or not candidate_id:
            return None
        try:
            return recorder.load(candidate_id)
        except (OSError, ValueError):
            return None

    def _module(self, messages: list[dict[str, str]], purpose: str, plan: Plan,
                evaluated: dict[str, str] | None = None, failing_hash: str = "",
                fallback: bool = False) -> tuple[str | None, str, str]:
        """(module, problem, the answer's text) after bounded repairs and duplicate checks; the whole module."""
        repairs = duplicates = 0
        while True:
            reply = self.client.chat("coder", messages, purpose=purpose, model=self._model("coder", plan.models),
                                     candidate_id=plan.candidate_id)
            source, problem = read_module(reply.text, reply.finish_reason)
            if source is not None and failing_hash and source_hash(source) == failing_hash:
                source, problem = None, "the module is unchanged from the one that failed; change what the error points at"
            if source is None:
                repairs += 1
                problem = with_note(problem, reply)
                self._unusable("coder", reply, problem, repairs)
                if repairs > self.llm.repair_attempts:
                    self._answered(purpose, reply, "none", 0, 0, fallback)
                    return None, problem, reply.text
                messages = self._follow_up(messages, reply.text, user_text(
                    "repair", problem=problem, instruction="Reply with the whole module in one ```python block."))
                continue
            duplicates, again = self._copy_sent_back(source, evaluated, duplicates, messages, reply, purpose, plan)
            if again is not None:
                messages = again
                continue
            self._answered(purpose, reply, "module", 0, 0, fallback)
            return source, "", reply.text

    def _copy_sent_back(self, source: str, evaluated: dict[str, str], duplicates: int, messages: list[dict[str, str]],
                        reply, purpose: str, plan: Plan) -> tuple[int, list[dict[str, str]] | None]:
        """(copies so far, the messages that send this answer back) when `source` is an evaluated module again; the
        messages are None when it is not a copy, or when `llm.novelty_retries` copies have gone back already (kept)."""
        copy_of = self._copy(source, evaluated)
        if not copy_of:
            return duplicates, None
        duplicates += 1
        kept = duplicates > self.llm.novelty_retries
        self.client.emit(DuplicateCode(purpose=purpose, call_id=reply.call_id, duplicate_of=copy_of, kept=kept))
        if kept:
            return duplicates, None
        return duplicates, self._follow_up(messages, reply.text, user_text("duplicate_code", candidate_id=copy_of,
                                                                           title=plan.title))

    def _edited(self, messages: list[dict[str, str]], base: str, purpose: str, plan: Plan, entry: str,
                evaluated: dict[str, str] | None = None, failing_hash: str = "") -> tuple[str | None, str, str]:
        """(module, problem, the answer's text) from SEARCH/REPLACE edits of `base` (`agents.llm.edits`).

        Edits that do not apply (a SEARCH part not found or found several times, malformed blocks, a module that
        no longer parses, no change at all) go back with the exact reason, up to `llm.edit_attempts` times; then
        (None, problem, text) and the caller asks for the whole module. An answer that is a whole module defining
        the entry point is taken as it is; one with neither edits nor a module is repaired like any unusable answer.
        """
        failed = repairs = duplicates = 0
        while True:
            reply = self.client.chat("coder", messages, purpose=purpose, model=self._model("coder", plan.models),
                                     candidate_id=plan.candidate_id)
            edits = read_edits(reply.text)
            source, problem, form = None, "", "edits"
            if edits and count_markers(reply.text) > len(edits):      # a block cut off or malformed: apply none
                edits = []
            if edits:
                applied = apply_edits(base, edits)
                source, problem = applied.source, applied.reason()
                details = [p.text() for p in applied.problems]
                if source is not None and (syntax := syntax_error(source)):
                    source, problem = None, f"after the edits the module does not parse: {syntax}"
                    details = [problem]
                if source is not None and failing_hash and source_hash(source) == failing_hash:
                    source, problem = None, "the edits leave the module unchanged; change what the error points at"
                    details = [problem]
            elif has_markers(reply.text):
                problem = ("the answer was cut off before its last block ended; send fewer, shorter blocks"
                           if reply.finish_reason == "length" else
                           "the SEARCH/REPLACE blocks are malformed: each needs a line `<<<<<<< SEARCH`, the lines to "
                           "find, a line `=======`, the new lines, and a line `>>>>>>> REPLACE`")
                details = [problem]
            else:
                module, why = read_module(reply.text, reply.finish_reason)
                if module is not None and re.search(rf"^def {re.escape(entry)}\b", module, re.MULTILINE):
                    source, form = module, "module"         # a whole module is an answer too
                else:
                    repairs += 1
                    # the reader's own problem where it names one (empty, cut off, declined, too large)
                    specific = module is None and "no Python module was found" not in why
                    problem = with_note(why if specific else "no SEARCH/REPLACE block was found in the answer", reply)
                    self._unusable("coder", reply, problem, repairs)
                    if repairs > self.llm.repair_attempts:
                        return None, problem, reply.text
                    messages = self._follow_up(messages, reply.text, user_text(
                        "repair", problem=problem, instruction="Answer with SEARCH/REPLACE blocks against the module."))
                    continue
            if source is None:
                failed += 1
                retry = failed <= self.llm.edit_attempts
                self.client.emit(EditFailed(purpose=purpose, call_id=reply.call_id, attempt=failed,
                                            edits=len(edits), problems=details, will_retry=retry))
                self.client.emit(LLMError(role="coder", model=reply.model, candidate_id=reply.candidate_id,
                                          call_id=reply.call_id, attempt=failed, kind="unusable_answer", status=None,
                                          message=f"the edits did not apply: {problem}", will_retry=retry, retry_in=0.0))
                if not retry:
                    return None, problem, reply.text
                messages = self._follow_up(messages, reply.text, user_text("edit_failed", problems=problem))
                continue
            duplicates, again = self._copy_sent_back(source, evaluated, duplicates, messages, reply, purpose, plan)
            if again is not None:
                messages = again
                continue
            self._answered(purpose, reply, form, len(edits), failed, False)
            return source, "", reply.text

    @staticmethod
    def _copy(source: str, evaluated: dict[str, str] | None) -> str:
        """The id of the evaluated candidate whose module `source` is byte for byte; "" when none."""
        duplicate = NoveltyCheck.judge_source(source_hash(source), evaluated or {})
        return duplicate.nearest.id if not duplicate.novel and duplicate.nearest is not None else ""

    def _answered(self, purpose: str, reply: Reply, form: str, edits: int, failed: int, fallback: bool) -> None:
        """The `code_answer` event: what form the coder's answer took (how it was used)."""
        self.client.emit(CodeAnswer(purpose=purpose, call_id=reply.call_id, form=form, edits=edits, failed=failed,
                                    fallback=fallback))

    # --- analyst -------------------------------------------------------------------------
    def analyze(self, candidate: Candidate, parent: Candidate | None,
                baselines: list[Candidate]) -> tuple[str, list[Finding]]:
        comparison, evidence = ctx.measured(candidate, parent, baselines, self.objective)
        failed = candidate.status in ("failed", "rejected")
        last = list(candidate.evaluations.values())[-1] if candidate.evaluations else None
        failure = (f"Failure: {last.status}: {last.message[:1500]}\nLog tail:\n{last.log_tail[-1500:]}"
                   if failed and last else "")
        messages = render("analyst", noise=ctx.NOISE, task=candidate.task, candidate_id=candidate.id,
                          status=candidate.status, title=candidate.title, motivation=candidate.motivation or "-",
                          change=candidate.change or "-", metrics=ctx.metrics_line(candidate, self.objective),
                          failure=failure,
                          parent=f"{parent.id}: {ctx.metrics_line(parent, self.objective)}" if parent else "(none)",
                          baselines=ctx.baselines_text(baselines, self.objective), comparison=comparison,
                          curves=ctx.curves_text(candidate, parent),
                          noise_floor=ctx.noise_floor_text(scoring.noise_floors(
                              baselines, ctx.run_objective(self.objective, candidate.task))))
        repairs = 0
        while True:
            reply = self.client.chat("analyst", messages, AnalysisAnswer, purpose="analyze",
                                     model=self._model("analyst", candidate.models), candidate_id=candidate.id)
            answer, problem = read_json(reply.text, AnalysisAnswer, reply.finish_reason)
            if answer is not None:
                break
            repairs += 1
            problem = with_note(problem, reply)
            self._unusable("analyst", reply, problem, repairs)
            if repairs > self.llm.repair_attempts:
                text = f"{comparison} (The analyst model's answers could not be used: {problem}.)"
                kind = "failure" if failed else "insight"
                return text, [Finding(id=f"{candidate.run_id}-{candidate.id}-{kind}", text=comparison, kind=kind,
                                      task=candidate.task, candidate_ids=[candidate.id], evidence=evidence,
                                      change=candidate.change)]
            messages = self._follow_up(messages, reply.text, user_text(
                "repair", problem=problem, instruction="Answer again with the JSON object only."))
        findings = []
        for i, item in enumerate(answer.findings):
            claimed = {e.metric: e.value for e in item.evidence if e.value == e.value and abs(e.value) != float("inf")}
            findings.append(Finding(id=f"{candidate.run_id}-{candidate.id}-{i}", text=item.text,
                                    kind="failure" if failed and item.kind == "insight" else item.kind,
                                    task=candidate.task, candidate_ids=[candidate.id],
                                    evidence={**claimed, **evidence}, change=candidate.change))
        return f"{answer.summary}\nMeasured: {comparison}", findings

    # --- shared --------------------------------------------------------------------------
    def _follow_up(self, messages: list[dict[str, str]], answer: str, request: str) -> list[dict[str, str]]:
        return [*messages, {"role": "assistant", "content": clip(answer, ECHO_CHARS) or "(empty)"},
                {"role": "user", "content": request}]

    def _model(self, role: str, models: dict[str, str]) -> str:
        """The model chosen for `role` (a plan's or candidate's `models`), else the role's default."""
        return models.get(role) or self.client.model_for(role)

    def _unusable(self, role: str, reply: Reply, problem: str, count: int) -> None:
        self.client.emit(LLMError(role=role, model=reply.model, candidate_id=reply.candidate_id, call_id=reply.call_id,
                                  attempt=count, kind="unusable_answer", status=None, message=problem,
                                  will_retry=count <= self.llm.repair_attempts, retry_in=0.0))


def task_contract(spec: TaskSpec, coder: bool = True) -> str:
    """The contract in words, as the task states it (`Task.contract_text`)."""
    from evaluators.tasks import task_of
    return task_of(spec).contract_text(spec, coder)


def with_note(problem: str, reply: Reply) -> str:
    """The reader's problem, with what was odd about the answer's shape when that explains it."""
    return f"{problem} ({reply.note})" if reply.note and reply.note not in problem else problem


def proposal_text(title: str, hypothesis: str) -> str:
    title = re.sub(r"^[^:]*:\s*", "", title)          # "b-softmax: add a short conv" -> "add a short conv"
    return f"{title}. {hypothesis}"


def unusable_module(reason: str) -> str:
    reason = " ".join(reason.split())[:600]
    return UNUSABLE_MODULE.format(mark=UNUSABLE_MARK, reason=reason.replace('"""', "'''"),
                                  message=f"{reason}; the module must be written again")


def fix_note(reply_text: str) -> str:
    """The first line of prose before the code: what the model says it fixed."""
    for line in re.split(r"```|<{5,9} ?SEARCH", reply_text, maxsplit=1)[0].splitlines():
        line = line.strip(" #*-")
        if line:
            return line[:160]
    return ""


def syntax_error(source: str) -> str:
    """Where `source` stops parsing, as 'line N: message (`the line`)'; "" when it parses."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        line = (source.splitlines()[exc.lineno - 1].strip() if exc.lineno and exc.lineno <= len(source.splitlines())
                else "")
        return f"line {exc.lineno}: {exc.msg}" + (f" (`{line[:120]}`)" if line else "")
    except ValueError as exc:
        return str(exc)
    return ""


def round_to(value: float) -> float:
    return float(f"{value:.4f}")


__all__ = ["OpenAIEngine", "EngineUnavailable", "UnexpectedModelBehavior"]
