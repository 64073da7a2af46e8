"""Several models per role: a bandit that picks one per candidate by measured improvement per dollar.

Where `[llm]` lists several models for a role (`planner_model = ["a", "b"]`), the planner's
turn for a new candidate first chooses, for every such role, the model that will serve that
candidate: its plan, its code and fixes, its analysis. The choice is an upper confidence
bound (UCB1) over what the run has measured:

- **A pull** is a candidate of the branch's snapshot (`PlanContext.collected`: the branches
  collected before this one was proposed, including those that ended without a candidate)
  that the model served in that role. Its calls are known by the `candidate_id` of their
  `llm_response` events (`Ledger`).
- **Its gain** is the candidate's improvement over its parent on the objective
  (`agents.scoring.compare`, oriented, at the most expensive fidelity both measured),
  never below 0: a failed check, a plan that never became a candidate, a worse model all
  gain 0. For the analyst, whose analysis is read by the children's planner, a pull is a
  candidate whose children are in the snapshot, and its gain their mean gain.
- **Its cost** is what those calls cost: US dollars (`llm.prices`) when every model of the
  role has a price, else seconds of answer time (local models are paid in time).
- **The choice**: a model not tried yet first (in the order listed); then the largest
  `value / best value + routing_exploration * sqrt(2 ln N / pulls)`, where value is gain per
  unit of cost and N the role's pulls; ties go to the cheaper model per pull, then to the
  order listed.

Everything the choice reads is fixed by the snapshot: the candidates' records as the branch
saw them, and the calls made for them, all answered before they were collected. So
`archlab replay` recomputes the same choice from the log (`agents.replay.ReplayEngine`), and
the `models_chosen` event, which carries each arm's pulls, gain, cost and bound, is a decision
replay compares. What it does not do: share a pull between roles, or count the calls of a
branch still in flight (their results are not known yet).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from agents import scoring
from agents.event_types import ArmStats, LLMResponse, ModelsChosen
from agents.llm.settings import ROLES

if TYPE_CHECKING:
    from agents.engine import PlanContext
    from agents.llm.client import Pricing
    from agents.llm.settings import LLMSettings
    from agents.records import Candidate
    from evaluators.fitness import Objective

FREE = {"usd": 1e-9, "seconds": 1e-3}    # a pull that cost nothing still costs this much (no division by zero)


@dataclass
class Spend:
    """What one role's calls for one candidate cost."""
    model: str
    usd: float = 0.0
    seconds: float = 0.0
    calls: int = 0


class Ledger:
    """Spend per (candidate, role), read incrementally from a run's `llm_response` payloads; thread-safe."""

    def __init__(self) -> None:
        self._spend: dict[tuple[str, str], Spend] = {}
        self._read = 0
        self._lock = threading.Lock()

    def read(self, log: list[Any]) -> "Ledger":
        """Take in the events (or payloads) after the ones already read; `log` is the whole log, growing."""
        with self._lock:
            for item in log[self._read:]:
                data = getattr(item, "data", item)
                if isinstance(data, LLMResponse) and data.candidate_id:
                    spend = self._spend.setdefault((data.candidate_id, data.role), Spend(data.model))
                    spend.usd += data.cost_usd
                    spend.seconds += data.seconds
                    spend.calls += 1
            self._read = len(log)
        return self

    def spent(self, candidate_id: str, role: str) -> Spend | None:
        with self._lock:
            return self._spend.get((candidate_id, role))


class Router:
    def __init__(self, llm: "LLMSettings", pricing: "Pricing"):
        self.options = {role: llm.models(role) for role in ROLES if len(llm.models(role)) > 1}
        self.exploration = llm.routing_exploration
        self.pricing = pricing

    @property
    def active(self) -> bool:
        """Whether any role has models to choose among."""
        return bool(self.options)

    def choose(self, context: "PlanContext", ledger: Ledger, objective: "Objective") -> ModelsChosen:
        records = {c.id: c for c in context.candidates}
        collected = context.collected if context.collected is not None else list(records)
        gains = {cid: _gain(records.get(cid), records, objective) for cid in collected}
        children: dict[str, list[float]] = {}
        for cid in collected:
            record = records.get(cid)
            if record is not None and record.parent_ids:
                children.setdefault(record.parent_ids[0], []).append(gains[cid])
        models, arms = {}, []
        for role, options in self.options.items():
            unit = "usd" if all(self.pricing.lookup(m) is not None for m in options) else "seconds"
            table = {m: ArmStats(role=role, model=m, pulls=0, gain=0.0, cost=0.0, unit=unit, value=0.0, bound=None)
                     for m in options}
            for cid in collected:
                spend = ledger.spent(cid, role)
                if spend is None or spend.model not in table:
                    continue
                gain = gains[cid] if role != "analyst" else _mean(children.get(cid))
                if gain is None:
                    continue
                arm = table[spend.model]
                arm.pulls += 1
                arm.gain += gain
                arm.cost += spend.usd if unit == "usd" else spend.seconds
            models[role] = self._pick(list(table.values()), unit)
            arms.extend(table.values())
        return ModelsChosen(round=context.round, candidate_id=context.candidate_id, models=models,
                            arms=[a.model_copy(update={"gain": _rounded(a.gain), "cost": _rounded(a.cost),
                                                       "value": _rounded(a.value),
                                                       "bound": None if a.bound is None else _rounded(a.bound)})
                                  for a in arms])

    def _pick(self, arms: list[ArmStats], unit: str) -> str:
        untried = [a for a in arms if a.pulls == 0]
        if untried:
            return untried[0].model
        for arm in arms:
            arm.value = arm.gain / max(arm.cost, FREE[unit] * arm.pulls)
        best = max(a.value for a in arms)
        total = sum(a.pulls for a in arms)
        for arm in arms:
            exploit = arm.value / best if best > 0 else 0.0
            arm.bound = exploit + self.exploration * math.sqrt(2 * math.log(total) / arm.pulls)
        order = {a.model: i for i, a in enumerate(arms)}
        chosen = max(arms, key=lambda a: (_rounded(a.bound), -a.cost / a.pulls, -order[a.model]))
        return chosen.model


def _gain(candidate: "Candidate | None", records: dict[str, "Candidate"], objective: "Objective") -> float:
    """The candidate's improvement over its parent, never below 0 (0 for no candidate, no parent, no shared rung)."""
    if candidate is None or not candidate.parent_ids or candidate.parent_ids[0] not in records:
        return 0.0
    found = scoring.compare(candidate, records[candidate.parent_ids[0]], objective)
    if found is None or not math.isfinite(found.gain):
        return 0.0
    return max(0.0, found.gain)


def _mean(values: Iterable[float] | None) -> float | None:
    values = list(values or [])
    return sum(values) / len(values) if values else None


def _rounded(value: float) -> float:
    """Rounded as the log keeps it, so a replay compares what it recomputes with what was recorded."""
    return float(f"{value:.6g}")
