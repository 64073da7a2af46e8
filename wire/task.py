"""The `TaskSpec` record: what a task is, its shapes and its budgets per fidelity.

A candidate's `build_model(spec)` receives this object, so its field names are part of the
candidate contract (`spec.vocab_size`, `spec.seq_len`, `spec.d_model` hint, ...).
"""
from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field, model_serializer

Fidelity = Literal["check", "proxy", "short", "full", "bench"]
# the one home of the fidelities' order: cheapest first; `bench` measures speed and memory, not quality
FIDELITY_ORDER: tuple[str, ...] = get_args(Fidelity)
SCREENING = ("check", "proxy")        # run the model without training it
TRAINING = ("short", "full")          # train it: the rungs a quality is measured at


class Budget(BaseModel):
    """How much training one fidelity gets."""

    steps: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    warmup_frac: float = Field(default=0.1, ge=0, le=1)
    # a smaller instance of the task for this fidelity (e.g. {"seq_len": 16, "num_pairs": 2}): the model is built,
    # trained and scored on it; empty = the task as specified
    instance: dict[str, int | float | str] = Field(default_factory=dict)
    # the GPU path's settings (`evaluators.fidelities.train`): split each step's batch into this many micro-batches
    # whose gradients add up to the whole batch's (same data, same step: only the memory changes), and compile the
    # model with torch.compile on a GPU. Written only when set, so a spec that leaves them alone serialises (and
    # hashes, e.g. in benchmark caches) exactly as before they existed.
    accumulate: int = Field(default=1, ge=1)
    compile: bool = False

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler):
        out = handler(self)
        if isinstance(out, dict):
            if out.get("accumulate") == 1:
                out.pop("accumulate")
            if out.get("compile") is False:
                out.pop("compile")
        return out


class RunDefaults(BaseModel):
    """Settings a run of a task gets where the user set none (`Task.run_defaults`)."""

    limits: dict[str, float] = Field(default_factory=dict)   # objective limits: metric -> bound (infeasible beyond)
    costs: list[str] | None = None      # the objective's cost axes (None: the run's default)
    proxy_rung: bool | None = None      # False: the task has no zero-cost proxies (setting it true is refused)
    workers: int | None = None          # executor workers (e.g. 1 where jobs time themselves)
    cpus: float | None = None           # threads per job


class TaskSpec(BaseModel):
    """A task as the candidate and the evaluator see it."""

    schema_version: int = 1
    name: str
    # how to find the task again, in the sandbox and in a later process: "" for a shipped or installed task found by
    # `name`, or "path/to/task.py:Class" for a task given as a file (`evaluators.tasks.get_task`)
    ref: str = ""
    family: str = Field(min_length=1)   # the shape of a candidate's contract: sequence, vision, decoding, tabular, ...
    vocab_size: int = Field(default=0, ge=0)
    seq_len: int = Field(default=0, ge=0)
    num_classes: int = Field(default=0, ge=0)
    data: dict[str, int | float | str] = Field(default_factory=dict)  # task-specific data recipe
    seed: int = 0
    heldout_size: int = Field(default=256, ge=1)
    max_params: int = Field(default=2_000_000, ge=1)  # check refuses models above this
    budgets: dict[str, Budget] = Field(default_factory=dict)

    def at(self, fidelity: str) -> "TaskSpec":
        """The spec a model is built, trained and scored on at `fidelity` (its budget's `instance` applied)."""
        budget = self.budgets.get(fidelity)
        if budget is None or not budget.instance:
            return self
        top = {k: v for k, v in budget.instance.items() if k in ("seq_len", "vocab_size", "num_classes")}
        data = {**self.data, **{k: v for k, v in budget.instance.items() if k not in top}}
        return self.model_copy(update={**top, "data": data})
