"""Helpers for the `openai` backend tests: settings with tiny waits, candidates with numbers, answers that work."""
from __future__ import annotations

from pathlib import Path

from agents.engine import PlanContext
from agents.events import EventLog, read_events
from agents.llm.engine import OpenAIEngine
from agents.llm.fake import Answer
from agents.recorder import Recorder
from agents.records import Candidate, Plan
from archlab.settings import LLMSettings
from evaluators.baselines import BASELINES
from evaluators.tasks import get_task
from knowledge.embedders import HashingEmbedder
from knowledge.store import KnowledgeStore
from wire.jobs import EvalResult

KEY = "sk-test-4f8a1c9e2b7d6a3f-never-log-me"
SPEC = get_task("mqar").default_spec(seq_len=32, num_pairs=4, num_queries=4, short_steps=30)
PLAN = {"title": "add a short causal convolution", "hypothesis": "A width-3 causal depthwise convolution before "
        "attention lets each key see its value, which makes key-value binding easier.", "change_kind": "short_conv",
        "change": "insert a causal depthwise conv of width 3 before the attention in each block",
        "expected_effect": "accuracy up by a few points at equal parameters"}
THE_PLAN = Plan(title="b-softmax: narrower model", motivation="fewer parameters", change="width_depth",
                detail="d_model 64 -> 40", parent_id="b-softmax")
ANALYSIS = {"summary": "The narrower model kept most of its recall with fewer parameters.",
            "findings": [{"text": "Narrowing d_model from 64 to 48 on MQAR cost a little accuracy.", "kind": "insight",
                          "evidence": [{"metric": "accuracy", "value": 0.55}]}]}


def module(d_model: int = 48) -> str:
    """The softmax baseline with another width: a real, runnable candidate."""
    return BASELINES["softmax_attention"][1].replace('"d_model": 64', f'"d_model": {d_model}')


def fenced(source: str, before: str = "Here is the module:", after: str = "") -> str:
    return f"{before}\n```python\n{source}```\n{after}"


def settings(url: str, **over) -> LLMSettings:
    values = dict(backend="openai", base_url=url, planner_model="planner-m", coder_model="coder-m",
                  analyst_model="analyst-m", timeout_seconds=0.5, max_retries=2, backoff_seconds=0.01,
                  max_backoff_seconds=0.2, repair_attempts=2, novelty_retries=2,
                  prices={"planner-m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                          "coder-m": {"input_per_mtok": 3.0, "output_per_mtok": 6.0}})
    values.update(over)
    return LLMSettings(**values)


class Lab:
    """What `OpenAIEngine.attach` needs from the graph's Lab: an event log and a knowledge store.

    With `records`, also what an older caller of `fix` leaves the engine to read from the run:
    the candidates on disk and the run's spec.
    """

    def __init__(self, directory: Path, records: list[Candidate] | None = None):
        self.events = EventLog(directory / "events.jsonl")
        self.store = KnowledgeStore(directory / "knowledge", HashingEmbedder())
        if records is not None:
            self.recorder = Recorder(directory, self.events)
            self.spec = SPEC
            for candidate in records:
                self.recorder.save(candidate)

    def logged(self) -> list:
        return read_events(self.events.path)[0]


def engine(url: str, directory: Path, records: list[Candidate] | None = None, **over) -> tuple[OpenAIEngine, Lab]:
    eng = OpenAIEngine(settings(url, **over), seed=0, api_key=KEY)
    lab = Lab(directory, records)
    eng.attach(lab)
    return eng, lab


def result(cid: str, fidelity: str = "short", status: str = "ok", message: str = "", **metrics) -> EvalResult:
    return EvalResult(job_id=f"{cid}-{fidelity}-0", candidate_id=cid, fidelity=fidelity, status=status,
                      metrics=metrics, message=message)


def baseline(cid: str, name: str, accuracy: float) -> Candidate:
    genome, source = BASELINES[name]
    return Candidate(id=cid, run_id="r1", task="mqar", title=f"baseline: {name}", motivation="reference architecture",
                     change="baseline", source=source, status="baseline", genome=genome,
                     evaluations={"short": result(cid, accuracy=accuracy, heldout_loss=2 - accuracy, params=100_000)})


def baselines() -> list[Candidate]:
    return [baseline("b-linear", "linear_attention", 0.3), baseline("b-mlp", "mlp_only", 0.05),
            baseline("b-softmax", "softmax_attention", 0.6)]


def child(cid: str = "c001", accuracy: float | None = 0.55, status: str = "evaluated", title: str = "",
          motivation: str = "", message: str = "") -> Candidate:
    evaluations = ({"short": result(cid, accuracy=accuracy, heldout_loss=1.5, params=80_000)} if accuracy is not None
                   else {"check": result(cid, "check", "error", message or "RuntimeError: shapes do not match")})
    return Candidate(id=cid, run_id="r1", parent_ids=["b-softmax"], task="mqar",
                     title=title or "b-softmax: narrower model", motivation=motivation or "fewer parameters, same recall",
                     change="width_depth", source=module(), status=status, evaluations=evaluations)


def context(candidates: list[Candidate] | None = None, round: int = 1) -> PlanContext:
    candidates = candidates or baselines()
    parent = next(c for c in candidates if c.id == "b-softmax")
    return PlanContext(spec=SPEC, round=round, parent=parent, candidates=candidates)


def plan_answers(n: int = 1) -> list[Answer]:
    return [Answer.json(PLAN) for _ in range(n)]
