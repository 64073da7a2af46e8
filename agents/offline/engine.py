"""The `offline` research engine: deterministic for a seed, no network, real changes and real analyses.

- planner: lists every change the catalogue allows on the parent's genome, drops those that
  would repeat an earlier genome, weighs each change kind by what the run and the retrieved
  findings say about it (gains raise a kind, losses and failures lower it), and draws one
  with a seeded generator.
- coder: renders the chosen genome as a self-contained module (`blocks.render`).
- fixer: repairs the failures it understands (over the parameter budget, non-finite
  outputs); gives up on the rest, so the failure is recorded as a finding.
- analyst: compares the candidate's measured numbers with its parent and the baselines.

"Better" is the run's objective (`agents.scoring`: its metric and direction, at the most
expensive fidelity both sides finished), set by `attach(lab)`; an engine built on its own
scores by the default `Objective()`.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re

from agents import scoring
from agents.engine import PlanContext
from agents.objective import merged_metrics
from agents.offline.blocks import render, validate
from agents.offline.changes import CHANGES, proposals
from agents.records import Candidate, Plan
from evaluators.fitness import Objective
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalResult

NOISE = 0.01  # differences of the objective's metric below this are called "no clear change"

# prior weight of each kind of change, from the reading list: recall lives in the sequence mixer
# and short convolutions (H3, Based) and mixer choice (Zoology) move it most; norms and FFN
# shape are second-order for MQAR
PRIORS = {"short_conv": 2.5, "swap_mixer": 1.5, "feature_map": 1.2, "output_gate": 1.0, "width_depth": 1.0,
          "heads": 0.8, "glu_ffn": 0.8, "ffn_mult": 0.6, "norm": 0.6}


def genome_hash(genome: dict) -> str:
    return hashlib.sha256(json.dumps(validate(genome), sort_keys=True).encode()).hexdigest()[:16]


class OfflineEngine:
    name = "offline"

    def __init__(self, seed: int, objective: Objective | None = None):
        self.seed = seed
        self.objective = objective or Objective()

    def attach(self, lab) -> None:
        """Score by the run's objective."""
        self.objective = lab.objective

    # --- planner -------------------------------------------------------------------------
    def change_weights(self, context: PlanContext) -> dict[str, float]:
        weights = {kind: PRIORS.get(kind, 1.0) for kind in CHANGES}
        by_id = {c.id: c for c in context.candidates}
        for candidate in context.candidates:
            if candidate.change not in weights or not candidate.parent_ids:
                continue
            parent = by_id.get(candidate.parent_ids[0])
            if candidate.status == "failed":
                weights[candidate.change] *= 0.5
            elif parent is not None:
                compared = scoring.compare(candidate, parent, self.objective)
                if compared is not None:
                    gain = compared.gain
                    weights[candidate.change] *= 1.5 if gain > NOISE else (0.7 if gain < -NOISE else 0.9)
        for finding, distance in context.findings:
            kind = finding.change
            if kind not in weights:
                continue
            closeness = max(0.0, 1.0 - distance)      # nearer findings weigh more
            if finding.kind == "failure":
                weights[kind] *= 1.0 - 0.3 * closeness
            else:
                gain = self._evidence_gain(finding.evidence)
                weights[kind] *= 1.0 + closeness * (0.5 if gain > NOISE else -0.3 if gain < -NOISE else 0.0)
        return weights

    def _evidence_gain(self, evidence: dict[str, float]) -> float:
        """A finding's measured change of the objective's metric (`delta_<metric>`), oriented (> 0: better);
        0 when the finding did not measure that metric."""
        delta = evidence.get(f"delta_{self.objective.metric}")
        if delta is None:
            return 0.0
        return delta if self.objective.higher_is_better else -delta

    def plan(self, context: PlanContext) -> Plan:
        rng = random.Random(f"{self.seed}:{context.round}:{context.parent.id}")
        parent_genome = validate(context.parent.genome or {})
        options = [p for p in proposals(parent_genome, context.spec) if genome_hash(p.genome) not in context.tried]
        if not options:
            raise NoProposal(f"every change to {context.parent.id} has been tried")
        weights = self.change_weights(context)
        # the round's slot k takes the k-th of draws without replacement, so concurrent siblings on one parent
        # propose different changes without seeing each other (slot 0 draws exactly what a lone candidate would)
        for _ in range(context.slot % len(options) + 1):
            kinds = sorted({p.change for p in options})
            kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
            choice = rng.choice([p for p in options if p.change == kind])
            options = [p for p in options if p is not choice]
        return Plan(title=f"{context.parent.id}: {choice.detail}", motivation=choice.motivation, change=choice.change,
                    detail=choice.detail, expected=choice.expected, parent_id=context.parent.id,
                    genome=choice.genome, retrieved=[f.id for f, _ in context.findings])

    # --- coder ---------------------------------------------------------------------------
    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec) -> str:
        return render(plan.genome or {}, title=plan.title, motivation=plan.motivation)

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int, *, parent: Candidate | None = None,
            spec: TaskSpec | None = None, candidates: list[Candidate] | None = None) -> tuple[Plan, str] | None:
        genome = dict(plan.genome or {})
        message = failure.message
        if "over the budget" in message:
            genome["d_model"] = max(genome.get("n_heads", 4) * 4, int(genome.get("d_model", 64) * 0.75) // 8 * 8)
            why = f"shrank d_model to {genome['d_model']} to fit the parameter budget"
        elif "NaN" in message or "inf" in message or "diverged" in message:
            genome.update(feature_map="elu1", norm="layernorm")
            why = "switched to a bounded feature map and LayerNorm to keep outputs finite"
        else:
            return None
        fixed = plan.model_copy(update={"genome": genome, "detail": f"{plan.detail}; fix {attempt}: {why}"})
        return fixed, render(genome, title=fixed.title, motivation=fixed.motivation)

    # --- analyst -------------------------------------------------------------------------
    def analyze(self, candidate: Candidate, parent: Candidate | None,
                baselines: list[Candidate]) -> tuple[str, list[Finding]]:
        if candidate.status == "failed":
            result = _last_result(candidate)
            status = result.status if result else "failed"
            reason = (result.message.splitlines() or [""])[0] if result else "no result"
            text = (f"Negative result: '{candidate.change}' ({_detail(candidate)}) on {candidate.parent_ids[0] if candidate.parent_ids else 'scratch'} "
                    f"failed with status {status}: {reason}")
            finding = Finding(id=f"{candidate.run_id}-{candidate.id}-failure", text=text, kind="failure",
                              task=candidate.task, candidate_ids=[candidate.id], change=candidate.change)
            return text, [finding]
        objective, metric = self.objective, self.objective.metric
        short = candidate.evaluations.get("short")
        evidence = {k: float(v) for k, v in (short.metrics.items() if short is not None and short.ok else ())
                    if isinstance(v, (int, float)) and math.isfinite(v)}
        parts = [f"{candidate.id} applies '{candidate.change}' ({_detail(candidate)})."]
        measured = [f"{v:.3f} at {f}" for f in ("short", "full")
                    if (v := candidate.metric(metric, f)) is not None and math.isfinite(v)]
        if measured:
            parts.append(f"Measured {metric}: {', '.join(measured)} "
                         f"({'higher' if objective.higher_is_better else 'lower'} is better).")
        compared = scoring.compare(candidate, parent, objective) if parent is not None else None
        if compared is not None:
            evidence.update({k: v for k, v in ((f"delta_{metric}", compared.delta), (f"parent_{metric}", compared.other))
                             if math.isfinite(v)})
            trend = "improved" if compared.gain > NOISE else "hurt" if compared.gain < -NOISE else "did not clearly change"
            line = (f"Against its parent {parent.id}, {metric} at {compared.fidelity} went from {compared.other:.3f} to "
                    f"{compared.value:.3f} ({compared.delta:+.3f}): the change {trend} {metric}")
            mine, theirs = merged_metrics(candidate), merged_metrics(parent)
            costs = [f"{cost} {theirs[cost]:,.0f} -> {mine[cost]:,.0f} ({(mine[cost] - theirs[cost]) / theirs[cost]:+.1%})"
                     for cost in objective.costs if mine.get(cost) and theirs.get(cost)]
            parts.append(line + (f"; {', '.join(costs)}." if costs else "."))
        against = [(b.id, scoring.compare(candidate, b, objective)) for b in baselines]
        against = [(bid, c) for bid, c in against if c is not None]
        if against:
            beaten = [bid for bid, c in against if c.gain > NOISE]
            parts.append(f"It beats {len(beaten)} of {len(against)} baselines"
                         + (f" ({', '.join(beaten)})." if beaten else "."))
        text = " ".join(parts)
        finding = Finding(id=f"{candidate.run_id}-{candidate.id}-insight", text=text, kind="insight",
                          task=candidate.task, candidate_ids=[candidate.id], evidence=evidence,
                          change=candidate.change)
        return text, [finding]


class NoProposal(RuntimeError):
    """The planner has nothing new to propose for this parent."""


def _last_result(candidate: Candidate) -> EvalResult | None:
    return list(candidate.evaluations.values())[-1] if candidate.evaluations else None


def _detail(candidate: Candidate) -> str:
    return re.sub(r"^[^:]*:\s*", "", candidate.title)
