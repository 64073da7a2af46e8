"""The payload of every event type: one pydantic model per type, registered by the type's name.

An event is emitted as its model, `events.emit(JobStarted(job_id=..., ...))`: the type is the
name the model is registered under, and the model validates its fields when it is built.
`read_events` validates every line it reads, so the log holds only payloads these models
describe, and readers take the payload as its model, `event.data` (`event.data.job_id`,
`isinstance(event.data, JobResult)`), never as a dict. An unknown type or a bad payload is a
programming error and raises `EventSchemaError`, naming the type and the field.

Adding an event type is a change here and nowhere else: a `@event("name")` line and a
`Payload` subclass with the fields the emit call passes, in the section it belongs to:

    @event("batch_started")
    class BatchStarted(Payload): round: int; size: int

Set `decides = ("field", ...)` on the model when replay must see that event come out the
same (`archlab.replay.decisions` reads it; nothing else lists decisions); decisions that carry
a `candidate_id` are compared per candidate, since a round's branches interleave. A field that
legitimately carries an open-ended mapping (metrics, settings) is typed as a dict, never
the whole payload; a key that is a Python keyword gets `Field(alias="from")` (lines are
written by alias; the model is built by the field's name, `from_=`). `tests/test_event_types.py` scans the source tree: it fails on an emit by
type name (`.emit("result", ...)`; `EventLog.emit` takes the model alone) or a dict read of a payload
(`.payload[...]`, `.payload.get(...)`), and while a model is registered under more than one type
(a typed emit could not tell which it is).

Changing a model so that lines already written no longer fit it (a new required field, a
renamed or retyped one) also needs an upgrade step (`agents.events.UPGRADES`) and a bump of
`agents.events.SCHEMA_VERSION`; a new field with a default does not.

What it does not do: check values against the run (that a job id exists, say), or version
the records nested in payloads (`EvalResult`, `TaskSpec`, `Plan`, `Finding`), which keep their
own `schema_version`.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic_core import ErrorDetails
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from agents.records import CandidateStatus, Plan
from knowledge.records import Finding
from wire.jobs import EvalResult, Status
from wire.task import Fidelity, TaskSpec


class EventSchemaError(TypeError):
    """An event whose type has no model, or whose payload does not fit its model: a bug in the code that emits it
    (or a log written by another archlab). Not a `ValueError`, so no handler of bad input swallows it."""

    def __init__(self, event_type: str, problems: list[str], where: str = ""):
        self.event_type, self.problems = event_type, problems
        at = f" ({where})" if where else ""
        super().__init__(f"event {event_type!r}{at}: " + "; ".join(problems)
                         + " - fix the emit call or its model in agents/event_types.py")


# a measured number; JSON has no NaN, so a NaN is written as null and read back as NaN
Real = Annotated[float, BeforeValidator(lambda v: math.nan if v is None else v)]


class Payload(BaseModel):
    """Base of every payload model: a fixed shape (no unknown fields). Building one with a field that does not fit
    raises `EventSchemaError` naming the event type and the field (a pydantic `ValidationError` is a `ValueError`,
    which a handler of bad input might swallow)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True)   # by name: `from_=` for `Field(alias="from")`
    decides: ClassVar[tuple[str, ...]] = ()      # the fields replay compares; () = not a decision
    # the field naming the branch (candidate) an event belongs to: branches run concurrently, so replay
    # compares their decisions branch by branch; a model without this field belongs to the run
    branch_field: ClassVar[str] = "candidate_id"

    # pydantic calls a model's own __init__ also when it validates one (`model_validate`), so reading a line and
    # building a payload refuse a bad field the same way; payload models are therefore never nested in each other
    def __init__(self, /, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            names = [name for name, model in EVENT_TYPES.items() if model is type(self)]
            raise EventSchemaError(" | ".join(names) or type(self).__name__,
                                   [_problem(e) for e in exc.errors()]) from None


EVENT_TYPES: dict[str, type[Payload]] = {}       # event type name -> its payload model


def event(*names: str):
    """Register the decorated model as the payload of the event types `names`."""
    def register(model: type[Payload]) -> type[Payload]:
        unknown = [f for f in model.decides if f not in model.model_fields]
        if unknown:
            raise TypeError(f"{model.__name__}.decides names {unknown}, which are not fields")
        for name in names:
            if name in EVENT_TYPES:
                raise TypeError(f"event type {name!r} is registered twice ({EVENT_TYPES[name].__name__}, "
                                f"{model.__name__})")
            EVENT_TYPES[name] = model
        return model
    return register


# --- the run ----------------------------------------------------------------------------------
@event("run_started")
class RunStarted(Payload):
    run_id: str
    task: str
    rounds: int
    engine: str
    sandbox: str
    spec: TaskSpec
    workers: int | None = None          # jobs the executor runs at once (None: older logs)


@event("run_resumed")
class RunResumed(RunStarted):
    """A stopped run driven again (`archlab resume`): the same fields as `run_started`."""


@event("run_stopped")
class RunStopped(Payload):
    reason: str


@event("run_failed")
class RunFailed(Payload):
    error: str


@event("run_finished")
class RunFinished(Payload):
    decides = ("rounds",)
    rounds: int
    reason: str


@event("settings_overridden")
class SettingsOverridden(Payload):
    """`archlab resume --config`: settings of a stopped run changed before it goes on."""
    config: str                         # the TOML file
    changed: dict[str, dict[str, Any]]  # "table.key" -> {"from": old value, "to": new value}


@event("budget_exhausted")
class BudgetExhausted(Payload):
    round: int
    reason: str


@event("log_repaired")
class LogRepaired(Payload):
    dropped_bytes: int


@event("log_upgraded")
class LogUpgraded(Payload):
    """Older lines of this log were read through an upgrade step (`agents.events.UPGRADES`)."""
    step: str                   # e.g. "upgrade_v1_to_v2"
    from_version: int
    to_version: int
    events: int                 # how many lines went through it
    changes: dict[str, int]     # what it changed -> how many times


# --- a round: select, plan, code, check, fix, review, analyze ---------------------------------
@event("round_started")
class RoundStarted(Payload):
    round: int


@event("parents_selected")
class ParentsSelected(Payload):
    """A proposal: its parent and candidate id, chosen among the `visible` candidates collected so far (older logs:
    a whole round's batch, one parent per candidate id; a one-candidate round of the oldest has no ids)."""
    decides = ("round", "parent_ids", "candidate_ids", "explore", "visible")
    round: int
    parent_ids: list[str]
    explore: bool                       # whether the parent is not the best ranked
    ranking: list[str]
    candidate_ids: list[str] = Field(default_factory=list)
    visible: int | None = None          # how many collected candidates (round 0 first) the proposal could see
    slot: int | None = None             # its place in its round
    batch: int | None = None            # proposals per round


@event("candidate_collected")
class CandidateCollected(Payload):
    """A branch ended and the run took in its candidate (round 0: every baseline and reference, in a fixed order).
    The order of these events is what later proposals see, and the order a replay collects in."""
    round: int
    candidate_id: str


@event("retrieval")
class Retrieval(Payload):
    decides = ("round", "candidate_id", "finding_ids")
    round: int
    candidate_id: str = ""              # the branch that retrieved ("" in one-candidate logs)
    query: str
    finding_ids: list[str]
    distances: list[Real]


@event("no_proposal")
class NoProposalFound(Payload):
    round: int
    parent_id: str
    reason: str
    candidate_id: str = ""


@event("branch_exhausted")
class BranchExhausted(Payload):
    """A branch of the round found nothing new to propose for any parent; it ends without a candidate."""
    decides = ("round", "candidate_id")
    round: int
    candidate_id: str
    reason: str


@event("plan_failed")
class PlanFailed(Payload):
    """The planner's answers stayed unusable: this branch of the round ends without a candidate."""
    decides = ("round", "candidate_id")
    round: int
    candidate_id: str
    parent_id: str
    reason: str


@event("search_exhausted")
class SearchExhausted(Payload):
    """Every branch of a round found nothing new: the run ends cleanly."""
    decides = ("round",)
    round: int
    reason: str


@event("parent_twin")
class ParentTwin(Payload):
    """A module computing exactly what its parent computes: sent back to the coder before any training."""
    decides = ("candidate_id", "parent_id")
    round: int
    candidate_id: str
    parent_id: str
    functional_hash: str


@event("worker_replaced")
class WorkerReplaced(Payload):
    """A warm worker died (or never became ready) before it took its job; the job ran on a fresh one."""
    worker: int                         # the executor slot
    job_id: str = ""
    reason: str = ""


@event("plan")
class PlanMade(Payload, Plan):
    """The `Plan` record, and the round it was made in."""
    decides = ("round", "candidate_id", "parent_id", "change", "detail")
    round: int


@event("code")
class CodeWritten(Payload):
    round: int
    candidate_id: str
    parent_id: str
    source_hash: str
    source: str


@event("fix")
class FixAttempt(Payload):
    round: int
    candidate_id: str
    attempt: int
    gave_up: bool
    detail: str | None = None           # the rest is None when the fixer gave up
    source_hash: str | None = None
    source: str | None = None


@event("review_waiting")
class ReviewWaiting(Payload):
    """The review interrupt's request (less the source): what the person is asked to decide."""
    candidate_id: str
    round: int
    fidelity: Fidelity
    policy: str
    plan: dict[str, Any] | None         # a `Plan` dump, as the graph state holds it
    parent_id: str
    metrics: dict[str, dict[str, Real]]  # fidelity -> that evaluation's metrics
    interrupt_id: str


@event("review_decision")
class ReviewDecision(Payload):
    decides = ("candidate_id", "fidelity", "action")
    round: int
    candidate_id: str
    fidelity: Fidelity
    action: Literal["approve", "reject", "edit"]
    note: str
    edited_code: bool
    edited_plan: bool


@event("analysis")
class Analysis(Payload):
    decides = ("candidate_id", "status")
    round: int
    candidate_id: str
    status: CandidateStatus
    text: str


@event("finding")
class FindingStored(Payload, Finding):
    """The `Finding` record as the store kept it, and the round it was learned in."""
    round: int


# --- jobs -------------------------------------------------------------------------------------
@event("job_started")
class JobStarted(Payload):
    job_id: str
    candidate_id: str
    fidelity: Fidelity
    sandbox: str
    source_hash: str
    seed: int | None                    # None only in logs from before seeds were recorded
    items: str | None = None            # the anchor set (`suite_anchors` id) the job scores; None: the whole suite
    branch: str | None = None           # the branch (candidate id) that started it; None: round 0, or older logs
    gpus: int = 0                       # GPUs the job holds (a budget counts them while it runs)


@event("job_reused")
class JobReused(Payload):
    job_id: str
    candidate_id: str
    fidelity: Fidelity


@event("sandbox_error")
class SandboxError(Payload):
    job_id: str
    message: str


@event("result")
class JobResult(Payload):
    """A job's outcome. A static check ran nothing in the sandbox: it has no GPUs and no full record."""
    decides = ("job_id", "status")
    job_id: str
    candidate_id: str
    fidelity: Fidelity
    status: Status
    metrics: dict[str, Real]
    message: str
    timings: dict[str, Real]
    gpus: int = 0                       # GPUs the job held (for the GPU-hour budget)
    result: EvalResult | None = None    # the whole record, log tail clipped; what replay answers the job with


# --- scoring: rungs, seeds, the front, the cheap score ----------------------------------------
@event("promotion")
class Promotion(Payload):
    """A rung decision. Unranked promotions (proxies unavailable) carry only the verdict and a reason."""
    decides = ("candidate_id", "rung", "promoted")
    round: int
    candidate_id: str
    rung: Literal["proxy", "short"]     # the rung just finished
    to: Literal["short", "full"]
    promoted: bool
    rank: int | None = None             # 1 = best
    pool: int | None = None
    keep: int | None = None
    score: Real | None = None
    target: str | None = None           # the fidelity the cheap score was fitted against, or "prior"
    weights: dict[str, Real] | None = None
    reason: str = ""                    # why it was promoted regardless of rank


@event("comparison")
class Comparison(Payload):
    """A verdict against the parent (`agents.scoring.verdict`): at `full` over seeds as soon as both are trained
    there, else at the end of the round at the rung both reached, against that rung's noise floor."""
    decides = ("candidate_id", "parent_id", "fidelity", "verdict")
    round: int
    candidate_id: str
    parent_id: str
    metric: str
    delta: Real
    low: Real                           # the 95% interval of delta it rests on (NaN: none, e.g. no floor measured)
    high: Real
    better: bool
    worse: bool
    verdict: str                        # "better" | "worse" | "not distinguishable"
    child_seeds: int
    parent_seeds: int
    fidelity: Fidelity = "full"         # the rung compared at (logs before the noise floor judged only at full)
    basis: str = "seeds"                # "seeds" | "floor" | "no floor" | "diverged"
    floor: Real | None = None           # the rung's noise floor, when the verdict rests on it
    value: Real | None = None           # the child's metric there, and the parent's
    other: Real | None = None
    text: str = ""                      # the verdict as `show`, the page and the analysts print it


class FloorAtRung(BaseModel):
    """One rung's noise floor (`agents.scoring.Floor`)."""
    model_config = ConfigDict(extra="forbid")
    fidelity: Fidelity
    metric: str
    floor: Real                         # half-width of the 95% interval of a difference between two single runs
    std: Real                           # pooled seed-to-seed standard deviation of one run
    dof: int
    results: int                        # single runs it rests on
    sources: list[str]                  # the baselines / random references measured over several seeds


@event("noise_floor")
class NoiseFloor(Payload):
    """The run's noise floor per rung (`agents.scoring.noise_floors`), measured in round 0 from the baselines' extra
    seeds (and the random references' seeds), logged again at the end of any round that changed it."""
    decides = ("round", "floors")
    round: int
    floors: list[FloorAtRung]           # the rungs with a measured floor, most expensive first
    missing: str = ""                   # why a rung the run uses has none


@event("pareto_front")
class ParetoFront(Payload):
    round: int
    task: str
    ids: list[str]


@event("cheap_score")
class CheapScoreReport(Payload):
    """`agents.screening.tau_report`: how well the cheap score ranks against the expensive fidelity."""
    round: int
    target: str
    n: int
    tau: Real | None
    tau_loo: Real | None
    signal_taus: dict[str, Real]
    weights: dict[str, Real]
    fitted: bool | None = None          # only once there were enough candidates to compute tau


@event("suite_anchors")
class SuiteAnchors(Payload):
    """An anchor set of the task's downstream suite, fitted on the run's whole-suite results (`agents.anchors`): the
    items later `short` jobs score (when `used`), and how far its estimates can be trusted."""
    decides = ("round", "id", "used")
    round: int
    id: str
    method: str
    items: list[int]
    weights: list[float]
    labels: list[int]                   # each item's scenario (an index into `scenarios`)
    offsets: list[float]                # per scenario present, the estimate's calibration on the sources
    scales: list[float]
    suite_items: int                    # items in the whole suite
    scenarios: list[str]
    sources: int                        # whole-suite results it was fitted on
    source_jobs: list[str]
    tau: Real                           # Kendall tau of cross-validated estimates with the whole-suite scores
    error: Real                         # their mean absolute error on the suite's score
    reliability: Real                   # share of pairwise decisions that stand under re-drawn subsets
    top_k: Real                         # share of re-drawn subsets that keep the whole suite's top k
    k: int
    used: bool
    reason: str = ""


@event("suite_decision")
class SuiteDecision(Payload):
    """A short verdict against the parent on the anchor set, when the objective ranks by a suite metric
    (`agents.anchors.escalate`): how often it stands under resampled anchors, and whether it was taken again on the
    whole suite."""
    decides = ("candidate_id", "escalated")
    round: int
    candidate_id: str
    parent_id: str
    metric: str
    anchors: str                        # the anchor set's id
    reliability: Real | None            # None: the parent has no scores on these items to pair with
    escalated: bool


@event("cache_hit")
class CacheHit(Payload):
    round: int
    candidate_id: str
    twin_id: str
    fidelity: Fidelity
    functional_hash: str


@event("baseline")
class Baseline(Payload):
    candidate_id: str
    status: Status
    metrics: dict[str, Real]


@event("random_reference")
class RandomReference(Payload):
    candidate_id: str
    genome: dict[str, Any]
    status: Status
    fidelity: Fidelity
    metrics: dict[str, Real]


@event("random_reference_skipped")
class RandomReferenceSkipped(Payload):
    reason: str


# --- the LLM ----------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


@event("llm_request")
class LLMRequest(Payload):
    role: str
    model: str
    candidate_id: str = ""                # the candidate the call serves ("" for preflight probes)
    call_id: str
    attempt: int
    purpose: str
    structured: bool
    messages: list[ChatMessage]


@event("llm_response")
class LLMResponse(Payload):
    role: str
    model: str
    candidate_id: str = ""                # the candidate the call serves ("" for preflight probes)
    served_by: str
    call_id: str
    attempt: int
    text: str
    finish_reason: str
    refused: bool
    input_tokens: int
    output_tokens: int
    usage_estimated: bool
    cost_usd: float
    priced: bool
    seconds: float


@event("llm_error")
class LLMError(Payload):
    role: str
    model: str
    candidate_id: str = ""                # the candidate the call serves ("" for preflight probes)
    call_id: str
    attempt: int
    kind: str                           # rate_limit | server | timeout | connection | bad_response | refused | ...
    status: int | None
    message: str
    will_retry: bool
    retry_in: float | None


class ArmStats(BaseModel):
    """One model of one role as the router saw it when it chose (`agents.llm.routing`)."""
    model_config = ConfigDict(extra="forbid")
    role: str
    model: str
    pulls: int                          # candidates of the snapshot this model served in this role
    gain: float                         # their summed improvement over their parents (oriented, never below 0)
    cost: float                         # what those calls cost, in `unit`
    unit: Literal["usd", "seconds"]
    value: float                        # gain per unit of cost
    bound: float | None                 # the UCB score it was chosen by (None: not yet tried, tried first)


@event("models_chosen")
class ModelsChosen(Payload):
    """Which model serves each role for one candidate, chosen by measured improvement per dollar (or second)."""
    decides = ("candidate_id", "models")
    round: int
    candidate_id: str
    models: dict[str, str]              # role -> model, for the roles that list several
    arms: list[ArmStats]


@event("novelty_rejected")
class NoveltyRejected(Payload):
    round: int
    parent_id: str
    title: str
    nearest_id: str
    similarity: Real
    threshold: float
    kept: bool


@event("principles_retrieved")
class PrinciplesRetrieved(Payload):
    round: int
    ids: list[str]
    distances: list[Real]


@event("duplicate_code")
class DuplicateCode(Payload):
    purpose: str
    call_id: str
    duplicate_of: str
    kept: bool


@event("code_answer")
class CodeAnswer(Payload):
    """What form the coder's (or fixer's) answer took, as it was used (`agents.llm.engine`)."""
    purpose: str                        # code | fix N
    call_id: str                        # "" for a module rendered from a space change (no call)
    form: Literal["edits", "module", "space", "none"]   # none: no usable answer (a stand-in or a give-up follows)
    edits: int                          # SEARCH/REPLACE blocks applied
    failed: int                         # earlier answers of this call whose edits did not apply
    fallback: bool                      # the whole module was asked for after edits kept failing


@event("edit_failed")
class EditFailed(Payload):
    """An answer's edits did not apply; `problems` is what was sent back, one line per block."""
    purpose: str
    call_id: str
    attempt: int
    edits: int
    problems: list[str]
    will_retry: bool


@event("plateau")
class PlateauNotice(Payload):
    """The planner was told the run has plateaued (no new best beyond the noise floor in `proposals`)."""
    round: int
    parent_id: str
    best_id: str
    proposals: int
    floor: float | None


# --- reading the registry ---------------------------------------------------------------------
def payload_model(type: str) -> type[Payload]:
    model = EVENT_TYPES.get(type)
    if model is None:
        raise EventSchemaError(type, ["no payload model is registered for this type; add `@event(...)` and a "
                                      "`Payload` subclass (see the module docstring)"])
    return model


def type_of(data: Payload) -> str:
    """The event type a payload is emitted as: the one name its model is registered under."""
    names = [name for name, model in EVENT_TYPES.items() if model is type(data)]
    if len(names) != 1:
        raise EventSchemaError(type(data).__name__, [
            f"the model is registered under {names}; register it under exactly one event type (a model for a "
            f"second type with the same fields is a subclass, like `RunResumed`)" if names else
            "the model is not registered; add `@event(...)` above it (see the module docstring)"])
    return names[0]


def validate_payload(type: str, payload: dict[str, Any], where: str = "") -> Payload:
    """The payload as its model instance; `EventSchemaError` naming each bad field if it does not fit."""
    model = payload_model(type)
    try:
        return model.model_validate(payload)
    except EventSchemaError as exc:              # raised by `Payload.__init__`; says where, and by this name
        raise EventSchemaError(type, exc.problems, where) from None
    except ValidationError as exc:
        raise EventSchemaError(type, [_problem(e) for e in exc.errors()], where) from None


def _problem(error: ErrorDetails) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "(payload)"
    if error["type"] == "missing":
        return f"field {field!r} is missing"
    if error["type"] == "extra_forbidden":
        return f"field {field!r} is not part of the model"
    return f"field {field!r}: {error['msg']} (got {error.get('input')!r:.80})"


def decision_fields(type: str) -> tuple[str, ...]:
    """The fields replay compares for this event type; () for types that are not decisions (or unknown)."""
    model = EVENT_TYPES.get(type)
    return model.decides if model is not None else ()


def decision_types() -> dict[str, tuple[str, ...]]:
    return {name: model.decides for name, model in EVENT_TYPES.items() if model.decides}


def event_line_adapter() -> TypeAdapter:
    """One log line (`{"type": ..., "payload": ...}`) as a discriminated union over every registered type:
    for JSON Schema (`.json_schema()`) and for readers that validate whole lines at once."""
    lines = [create_model(f"{model.__name__}Line_{name}", type=(Literal[name], ...),  # type: ignore[arg-type]
                          payload=(model, ...)) for name, model in EVENT_TYPES.items()]
    return TypeAdapter(Annotated[Union[tuple(lines)], Field(discriminator="type")])  # type: ignore[arg-type]
