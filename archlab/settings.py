"""archlab's settings: one nested, validated object, loaded once from defaults, a TOML file, the environment and flags.

Precedence, lowest first: defaults, `ARCHLAB_*` environment variables
(nested with `__`, e.g. `ARCHLAB_SANDBOX__BACKEND=docker`), `--config FILE` (TOML), flags. The resolved
copy is written to `<run>/run.json`. Nothing else in archlab reads `os.environ` for settings.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.anchors import AnchorPolicy
from agents.control import Budgets
from agents.llm.settings import DEFAULT_PRICES, LLMSettings, Price  # noqa: F401  (re-exported)
from agents.limits import LoopSettings
from evaluators.tasks import UnknownTask, get_task, is_file_ref
from wire.task import RunDefaults


class SandboxSettings(BaseModel):
    backend: Literal["process", "docker"] = "process"   # where candidate code runs
    check_seconds: float = Field(default=120, gt=0)     # wall-clock limit of a contract check
    train_seconds: float = Field(default=600, gt=0)     # wall-clock limit of one training job
    memory_mb: int = Field(default=4096, ge=256)        # memory limit per job
    cpus: float | None = Field(default=None, gt=0)      # CPU threads / quota per job; None: the cores split over the workers
    gpus: int = Field(default=0, ge=0)                  # GPUs per training job (docker backend)
    pids: int = Field(default=256, ge=16)               # process limit per job
    image: str | None = None                            # docker: a prebuilt image (sandbox/Dockerfile); None: the offline image
    # process: how a job's interpreter starts. fork: from a zygote that imported torch once (milliseconds, the same
    # isolation); exec: a fresh interpreter per job (2-3 CPU-seconds of imports), the path before the zygote
    start: Literal["fork", "exec"] = "fork"


class ExecutorSettings(BaseModel):
    """Where and how many evaluation jobs run at once (`archlab.executors`)."""

    backend: Literal["local", "ray"] = "local"          # local: a pool of sandbox workers here; ray: the same on a Ray cluster
    workers: int | None = Field(default=None, ge=1, le=256)  # jobs at once; None: from the cores, CPUs per job and GPUs
    warm: bool = True                                   # start each worker (interpreter, torch imported) before its job
    share_gpus: bool = False                            # let concurrent jobs share a GPU (off: one job per GPU)
    # ray: "auto" (a cluster `ray start`ed on this machine), "ray://head:10001" (Ray Client) or "head:6379";
    # None: a local Ray instance started by the run with this machine's resources
    address: str | None = None
    resources: dict[str, float] = Field(default_factory=dict)  # ray: custom resources each job asks for, e.g. {gpu_node = 1}
    max_retries: int = Field(default=1, ge=0, le=10)   # ray: times a job whose worker or node was lost is run again

    @field_validator("address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or value.startswith("ray://") or ":" in value:
            return value
        raise ValueError("a Ray address is 'auto', 'ray://HOST:10001' or 'HOST:6379'")

    @model_validator(mode="after")
    def _ray_only(self) -> "ExecutorSettings":
        if self.backend != "ray" and (self.address is not None or self.resources):
            raise ValueError("executor.address and executor.resources are for executor.backend = 'ray'")
        return self


class KnowledgeSettings(BaseModel):
    path: Path | None = None                            # a shared store; default: <run>/knowledge
    url: str | None = None                              # a Chroma server (`chroma run`), e.g. http://chroma:8000; wins over path
    embedder: Literal["auto", "minilm", "hashing"] = "auto"  # auto = MiniLM when installed
    k: int = Field(default=5, ge=1, le=50)              # findings retrieved per plan

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("a Chroma server URL is http://HOST:PORT or https://HOST:PORT")
        return value

    @field_serializer("url")
    def _written_without_password(self, value: str | None) -> str | None:
        return without_password(value)


class CheckpointSettings(BaseModel):
    """Where LangGraph keeps the run's graph state (what `archlab resume` continues from)."""

    # a Postgres database, e.g. postgresql://lab@db/archlab; None: SQLite in the run directory. A password in
    # the URL is used but never written (run.json keeps the URL without it): give it as PGPASSWORD or in
    # ~/.pgpass, which is also what `archlab resume` reads
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("a checkpoint store URL is postgresql://USER@HOST:PORT/DATABASE")
        return value

    @field_serializer("url")
    def _written_without_password(self, value: str | None) -> str | None:
        return without_password(value)


def without_password(url: str | None) -> str | None:
    """`url` with any password taken out (from the user part and a `password=` query parameter): what
    run.json, logs and error messages show."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# cost metrics every model task reports; a task adds its own (`Task.costs`, e.g. decode's mismatch_rate)
COST_METRICS = ("params", "flops", "flops_per_token", "activation_bytes", "latency_ms_median", "latency_ms_p90",
                "peak_memory_bytes")


class ObjectiveSettings(BaseModel):
    """What "better" means: a quality metric under cost limits, and the cost axes of the Pareto front."""

    metric: str | None = None                           # quality metric; None: the task's own (accuracy)
    higher_is_better: bool = True                       # False for a loss
    limits: dict[str, float] = Field(default_factory=dict)  # cost -> largest allowed, e.g. {params = 500000}
    costs: list[str] = Field(default_factory=lambda: ["params"])  # Pareto axes, lower is better


class ReviewSettings(BaseModel):
    # when the graph stops for a person: never, always (before any training), before-full
    # (before a `full` evaluation), new-idea (when a kind of change is tried for the first time)
    policy: Literal["never", "always", "before-full", "new-idea"] = "never"
    poll_seconds: float = Field(default=1.0, gt=0)          # how often a waiting run looks for a decision


class UISettings(BaseModel):
    """The review page (`archlab ui`)."""

    host: str = "127.0.0.1"                             # where it listens; any non-loopback address requires the token
    port: int = Field(default=8400, ge=0, le=65535)     # 0: a free port, printed at start
    token_env: str = "ARCHLAB_UI_TOKEN"                 # the NAME of the variable holding the token; unset: one is generated

    def token(self) -> str | None:
        """The token from the variable named by `token_env`, read when the page starts; never stored or logged."""
        return os.environ.get(self.token_env) or None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARCHLAB_", env_nested_delimiter="__", extra="forbid")

    task: str = "mqar"          # which task to research: a name (`archlab tasks`) or path/to/task.py:ClassName
    rounds: int = Field(default=6, ge=1)                # rounds after the baselines
    seed: int = 0                                       # makes the offline engine and training deterministic
    runs_dir: Path = Path("runs")                       # where run directories go
    task_options: dict[str, Any] = Field(default_factory=dict)  # the task's `Options`, e.g. {short_steps = 200}
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    budget: Budgets = Field(default_factory=Budgets)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    ui: UISettings = Field(default_factory=UISettings)
    objective: ObjectiveSettings = Field(default_factory=ObjectiveSettings)
    checkpoints: CheckpointSettings = Field(default_factory=CheckpointSettings)
    suite: AnchorPolicy = Field(default_factory=AnchorPolicy)   # the downstream suite's anchor set, where a task has one

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if is_file_ref(value):      # recorded as an absolute path, so a run replays from anywhere
            path, _, attr = value.rpartition(":")
            value = f"{Path(path).expanduser().resolve()}:{attr}"
        try:
            get_task(value)
        except UnknownTask as exc:
            raise ValueError(str(exc)) from None
        return value


class RecordedSettings(Settings):
    """A run's settings as its run.json recorded them: the environment adds nothing (an `ARCHLAB_*` variable
    meant for today's run must not change what a recorded run was)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings,)


def recorded_settings(values: dict[str, Any]) -> Settings:
    """The settings a run recorded (`run.json`'s "settings"), read without the environment."""
    return RecordedSettings(**values)


class SettingsError(ValueError):
    """A setting is wrong; the message names it and says what is allowed."""


def read_config(config: Path) -> dict[str, Any]:
    """The tables of a TOML settings file; SettingsError when it is missing or not TOML."""
    try:
        return tomllib.loads(Path(config).read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {config} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {config} is not valid TOML: {exc}") from None


def flags_given(flags: dict[str, Any]) -> set[str]:
    return {key for key, value in flags.items() if value is not None}


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Resolve settings from a TOML file, the environment and flags (None flags are ignored)."""
    values: dict[str, Any] = read_config(config) if config is not None else {}
    for key, value in flags.items():
        if value is None:
            continue
        section, _, field = key.partition("__")
        if field:
            values.setdefault(section, {})[field] = value
        elif isinstance(value, dict) and isinstance(values.get(key), dict):   # a flag adds to a table, not replaces it
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    task = values.get("task")
    if config is not None and isinstance(task, str) and is_file_ref(task) and "task" not in flags_given(flags):
        path, _, attr = task.rpartition(":")      # a file task in lab.toml is relative to lab.toml
        values["task"] = f"{(Path(config).parent / Path(path).expanduser()).resolve()}:{attr}"
    try:
        settings = Settings(**values)
        task = get_task(settings.task)
        options = task.options(**dict(settings.task_options))      # typed and checked; no data is built here
        metric = settings.objective.metric
        if metric is not None and metric not in (task.metric, *task.metrics):
            raise SettingsError(f"setting 'objective.metric': {settings.task} reports "
                                f"{', '.join(repr(m) for m in (task.metric, *task.metrics))}, not {metric!r}")
        chosen = settings.objective
        if metric is not None and "higher_is_better" in chosen.model_fields_set \
                and chosen.higher_is_better != task.higher_is_better_for(metric):
            raise SettingsError(f"setting 'objective.higher_is_better': {task.name} reports {metric} with "
                                f"{'higher' if task.higher_is_better_for(metric) else 'lower'} better; set it to "
                                f"{str(task.higher_is_better_for(metric)).lower()} or leave it out")
        if task.search_space is None and settings.llm.backend == "offline":
            raise SettingsError(f"setting 'task': the offline engine searches a task's declared search space, and "
                                f"{settings.task!r} declares none; use --llm openai, or score modules with "
                                "`archlab eval`")
        costs = (*COST_METRICS, *task.costs)
        unknown = [k for k in (*settings.objective.limits, *settings.objective.costs) if k not in costs]
        if unknown:
            raise SettingsError(f"setting 'objective': unknown cost {', '.join(unknown)}; limits and costs can name "
                                f"{', '.join(costs)}")
        settings = _task_defaults(settings, task.run_defaults(options), task.name)
        if "higher_is_better" not in chosen.model_fields_set:      # the task's direction, written down for run.json
            settings = settings.model_copy(update={"objective": settings.objective.model_copy(
                update={"higher_is_better": task.higher_is_better_for(metric or task.metric)})})
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(f"task_options: {exc}") from None
    return settings


def _task_defaults(settings: Settings, defaults: RunDefaults, task: str) -> Settings:
    """The task's run defaults (`Task.run_defaults`) where the user set none: objective limits (the user's win
    per metric), cost axes, the proxy rung (a task without zero-cost proxies refuses `proxy_rung = true`),
    workers and threads per job."""
    objective, loop, executor, sandbox = settings.objective, settings.loop, settings.executor, settings.sandbox
    if defaults.proxy_rung is False and loop.proxy_rung and "proxy_rung" in loop.model_fields_set:
        raise SettingsError(f"setting 'loop.proxy_rung': {task} has no zero-cost proxies; set it to false")
    update: dict[str, Any] = {}
    if defaults.limits or defaults.costs is not None:
        costs = objective.costs if "costs" in objective.model_fields_set or defaults.costs is None else defaults.costs
        update["objective"] = objective.model_copy(update={"limits": {**defaults.limits, **objective.limits},
                                                           "costs": costs})
    if defaults.proxy_rung is not None and "proxy_rung" not in loop.model_fields_set:
        update["loop"] = loop.model_copy(update={"proxy_rung": defaults.proxy_rung})
    if defaults.workers is not None and executor.workers is None:
        update["executor"] = executor.model_copy(update={"workers": defaults.workers})
    if defaults.cpus is not None and sandbox.cpus is None:
        update["sandbox"] = sandbox.model_copy(update={"cpus": defaults.cpus})
    return settings.model_copy(update=update) if update else settings


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        lines.append(f"setting '{where}': {error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})")
    return "; ".join(lines)
