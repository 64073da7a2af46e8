"""The `offline` research engine: deterministic for a seed, no network, real changes and real analyses.

- planner: lists every change the catalogue allows on the parent's genome, drops those that
  would repeat an earlier genome, weighs each change kind by what the run and the retrieved
  findings say about it (gains raise a kind, losses and failures lower it), and draws one
  with a seeded generator.
- coder: renders the chosen genome as a self-contained module (`blocks.render`).
- fixer: repairs the failures it understands (over the parameter budget, non-finite
  outputs); gives up on the rest, so the failure is recorded as a finding.
- analyst: compares the candidate's measured numbers with its parent and the baselines.
"""
from __future__ import annotations

import hashlib
import json
import random
import re

from agents.engine import PlanContext
from agents.offline.blocks import render, validate
from agents.offline.changes import CHANGES, proposals
from agents.records import Candidate, Plan
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalResult

NOISE = 0.01  # accuracy differences below this are called "no clear change"

# prior weight of each kind of change, from the reading list: recall lives in the sequence mixer
# and short convolutions (H3, Based) and mixer choice (Zoology) move it most; norms and FFN
# shape are second-order for MQAR
PRIORS = {"short_conv": 2.5, "swap_mixer": 1.5, "feature_map": 1.2, "output_gate": 1.0, "width_depth": 1.0,
          "heads": 0.8, "glu_ffn": 0.8, "ffn_mult": 0.6, "norm": 0.6}


def genome_hash(genome: dict) -> str:
    return hashlib.sha256(json.dumps(validate(genome), sort_keys=True).encode()).hexdigest()[:16]


class OfflineEngine:
    name = "offline"

    def __init__(self, seed: int):
        self.seed = seed

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
                delta = _delta(candidate, parent, "accuracy")
                if delta is not None:
                    weights[candidate.change] *= 1.5 if delta > NOISE else (0.7 if delta < -NOISE else 0.9)
        for finding, distance in context.findings:
            kind = finding.change
            if kind not in weights:
                continue
            closeness = max(0.0, 1.0 - distance)      # nearer findings weigh more
            if finding.kind == "failure":
                weights[kind] *= 1.0 - 0.3 * closeness
            else:
                delta = finding.evidence.get("delta_accuracy", 0.0)
                weights[kind] *= 1.0 + closeness * (0.5 if delta > NOISE else -0.3 if delta < -NOISE else 0.0)
        return weights

    def plan(self, context: PlanContext) -> Plan:
        rng = random.Random(f"{self.seed}:{context.round}:{context.parent.id}")
        parent_genome = validate(context.parent.genome or {})
        options = [p for p in proposals(parent_genome, context.spec) if genome_hash(p.genome) not in context.tried]
        if not options:
            raise NoProposal(f"every change to {context.parent.id} has been tried")
        weights = self.change_weights(context)
        kinds = sorted({p.change for p in options})
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        choice = rng.choice([p for p in options if p.change == kind])
        return Plan(title=f"{context.parent.id}: {choice.detail}", motivation=choice.motivation, change=choice.change,
                    detail=choice.detail, expected=choice.expected, parent_id=context.parent.id,
                    genome=choice.genome, retrieved=[f.id for f, _ in context.findings])

    # --- coder ---------------------------------------------------------------------------
    def code(self, plan: Plan, parent: Candidate, spec: TaskSpec) -> str:
        return render(plan.genome or {}, title=plan.title, motivation=plan.motivation)

    def fix(self, plan: Plan, source: str, failure: EvalResult, attempt: int) -> tuple[Plan, str] | None:
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
        acc, loss = candidate.metric("accuracy"), candidate.metric("heldout_loss")
        params = candidate.metric("params")
        parts = [f"{candidate.id} applies '{candidate.change}' ({_detail(candidate)})."]
        evidence = {"accuracy": acc or 0.0, "heldout_loss": loss or 0.0, "params": params or 0.0}
        verdict = "insight"
        if parent is not None and parent.metric("accuracy") is not None:
            p_acc, p_loss, p_params = parent.metric("accuracy"), parent.metric("heldout_loss"), parent.metric("params")
            d_acc = acc - p_acc
            evidence.update(delta_accuracy=d_acc, delta_loss=loss - p_loss, parent_accuracy=p_acc)
            trend = "improved" if d_acc > NOISE else "hurt" if d_acc < -NOISE else "did not clearly change"
            parts.append(f"Against its parent {parent.id}, MQAR accuracy went from {p_acc:.3f} to {acc:.3f} "
                         f"({d_acc:+.3f}): the change {trend} recall. Held-out loss {p_loss:.3f} -> {loss:.3f}; "
                         f"parameters {int(p_params):,} -> {int(params):,} ({(params - p_params) / p_params:+.1%}).")
        scored = [(b.metric("accuracy"), b.id) for b in baselines if b.metric("accuracy") is not None]
        if scored:
            beaten = [bid for a, bid in scored if acc > a + NOISE]
            parts.append(f"It beats {len(beaten)} of {len(scored)} baselines"
                         + (f" ({', '.join(beaten)})." if beaten else "."))
        text = " ".join(parts)
        finding = Finding(id=f"{candidate.run_id}-{candidate.id}-insight", text=text, kind=verdict,
                          task=candidate.task, candidate_ids=[candidate.id], evidence=evidence,
                          change=candidate.change)
        return text, [finding]


class NoProposal(RuntimeError):
    """The planner has nothing new to propose for this parent."""


def _delta(candidate: Candidate, parent: Candidate, metric: str) -> float | None:
    a, b = candidate.metric(metric), parent.metric(metric)
    return None if a is None or b is None else a - b


def _last_result(candidate: Candidate) -> EvalResult | None:
    return list(candidate.evaluations.values())[-1] if candidate.evaluations else None


def _detail(candidate: Candidate) -> str:
    return re.sub(r"^[^:]*:\s*", "", candidate.title)
