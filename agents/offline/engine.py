"""The `offline` research engine: deterministic for a seed, no network, real changes and real analyses.

- planner: lists every change the catalogue allows on the parent's genome, its recombinations
  with the best genome so far and, once this parent's children stall, pairs of changes; drops
  those that would repeat an earlier genome; and picks one by Thompson sampling from the run's
  gene model (`agents.search`: what the best evaluations so far have in common, every
  baseline, reference, screened and failed candidate included), whose prior comes from the
  reading list (`GENE_PRIORS`). What the run and the retrieved findings say about a change kind
  (gains raise it, losses and failures lower it) adds a small bonus. Seeded: deterministic.
- coder: renders the chosen genome as a self-contained module (`blocks.render`).
- fixer: repairs the failures it understands (over the parameter budget, non-finite
  outputs); gives up on the rest, so the failure is recorded as a finding.
- analyst: compares the candidate's measured numbers with its parent and the baselines.

"Better" is the run's objective (`agents.scoring`: its metric and direction, at the most
expensive fidelity both sides finished), set by `attach(lab)`; an engine built on its own
scores by the default `Objective()`. A change "improved" or "hurt" the metric only by
`agents.scoring.verdict`: beyond the interval over seeds, or beyond the noise floor the run
measured on its baselines; the analyst prints that verdict with its interval, word for word
as `archlab show` does. The planner weighs change kinds by the same verdicts.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re

from agents import scoring, search
from agents.engine import PlanContext
from agents.objective import merged_metrics
from agents.offline.blocks import render, validate
from agents.offline.changes import CHANGES, proposals
from agents.records import Candidate, Plan
from evaluators.fitness import Objective
from wire.task import TaskSpec
from knowledge.records import Finding
from wire.jobs import EvalResult

NOISE = 0.01  # a remembered finding's change of the metric below this counts as none (when it names no floor)

# prior weight of each kind of change, from the reading list: recall lives in the sequence mixer
# and short convolutions (H3, Based) and mixer choice (Zoology) move it most; norms and FFN
# shape are second-order for MQAR
PRIORS = {"short_conv": 2.5, "swap_mixer": 1.5, "feature_map": 1.2, "output_gate": 1.0, "width_depth": 1.0,
          "heads": 0.8, "glu_ffn": 0.8, "ffn_mult": 0.6, "norm": 0.6}


# prior effect of a gene value on quality, in standard deviations of the population's quality (the gene model's
# prior mean; measured results override it): a short convolution before the mixer makes recall easy (H3, Based);
# attention recalls best and a pure convolution or no mixer worst (Zoology); a Taylor feature map sharpens a linear
# kernel (Based); output gates and GLUs help a little (GLA, GLU variants)
GENE_PRIORS = {"short_conv=3": 0.6, "short_conv=4": 0.6, "mixer=\"softmax\"": 0.3, "mixer=\"gated_linear\"": 0.1,
               "mixer=\"conv\"": -0.3, "mixer=\"none\"": -1.0, "feature_map=\"taylor\"": 0.1,
               "output_gate=true": 0.05, "ffn=\"glu\"": 0.05}
KIND_BONUS = 0.25   # weight of a change kind's measured record (log of its weight over its prior), in sd of quality
MAX_PAIRS = 400     # pairs of changes offered when single changes stall


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
        floors = scoring.noise_floors(context.candidates, self.objective)
        for candidate in context.candidates:
            if candidate.change not in weights or not candidate.parent_ids:
                continue
            parent = by_id.get(candidate.parent_ids[0])
            if candidate.status == "failed":
                weights[candidate.change] *= 0.5
            elif parent is not None:
                found = scoring.verdict(candidate, parent, self.objective, floors)
                if found is not None:
                    weights[candidate.change] *= 1.5 if found.better else (0.7 if found.worse else 0.9)
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
        0 when the finding did not measure that metric, or measured it inside the noise floor it names
        (`floor_<metric>`)."""
        delta = evidence.get(f"delta_{self.objective.metric}")
        if delta is None or abs(delta) <= evidence.get(f"floor_{self.objective.metric}", 0.0):
            return 0.0
        return self.objective.oriented(delta)

    def plan(self, context: PlanContext) -> Plan:
        objective = context.objective or self.objective
        rng = random.Random(f"{self.seed}:{context.round}:{context.parent.id}")
        parent_genome = self.parent_genome(context)
        options, seen = [], self.measured(context)
        for option in self.options(parent_genome, context, objective):
            key = genome_hash(option.genome)   # a recombination can land on a single change's genome: offer it once
            if key not in seen:
                seen.add(key)
                options.append(option)
        if not options:
            raise NoProposal(f"every change to {context.parent.id} has been tried")
        model = search.GeneModel.fit(search.observations(context.candidates, objective), self.gene_priors(),
                                     extra=[o.genome for o in options])
        # one posterior draw per (round, parent); the k-th sibling on this parent takes the k-th best of it, so
        # concurrent branches propose different genomes without seeing each other
        ranked = search.rank_options(options, model, rng, self.kind_bonus(context))
        sampled, choice = ranked[min(context.sibling_rank, len(ranked) - 1)]
        predicted, current = model.predict(choice.genome), model.predict(parent_genome)
        evidence = search.describe_traits(model)
        motivation = " ".join(part for part in (choice.motivation, evidence) if part)
        expected = (f"{choice.expected}; the gene model predicts {predicted - current:+.2f} sd against the parent"
                    if model.count else choice.expected)
        return Plan(title=f"{context.parent.id}: {choice.detail}", motivation=motivation, change=choice.change,
                    detail=choice.detail, expected=expected, parent_id=context.parent.id,
                    genome=choice.genome, retrieved=[f.id for f, _ in context.findings])

    # --- what a space's engine may change (`agents.offline.nb201.CellEngine`) ---------------------------------
    def parent_genome(self, context: PlanContext) -> dict:
        """The genome the plan changes."""
        return validate(context.parent.genome or {})

    def measured(self, context: PlanContext) -> set[str]:
        """Genome hashes never to propose again."""
        return set(context.tried)

    def gene_priors(self) -> dict[str, float] | None:
        """The reading list's prior effects of gene values (read at call time: a benchmark turns them off)."""
        return GENE_PRIORS

    def kind_bonus(self, context: PlanContext) -> dict[str, float] | None:
        """A bonus per kind of change, from what each kind achieved in this run against its prior."""
        weights = self.change_weights(context)
        return {kind: KIND_BONUS * math.log(max(w, 1e-6) / PRIORS.get(kind, 1.0)) for kind, w in weights.items()}

    def single_changes(self, parent_genome: dict, spec: TaskSpec) -> list[search.Option]:
        """The catalogue's changes of one kind to the parent's genome (also the LLM planner's menu: `agents.llm.space`)."""
        return [search.Option(p.genome, p.change, p.detail, p.motivation, p.expected, (p.change,))
                for p in proposals(parent_genome, spec)]

    def options(self, parent_genome: dict, context: PlanContext, objective: Objective) -> list[search.Option]:
        """The parent's single changes, its recombinations with the best genome so far, and pairs of changes once
        the parent's children stall (or its single changes are all tried): `agents.search.compose`."""
        singles = self.single_changes(parent_genome, context.spec)
        elite = search.elite_of(context.candidates, objective, besides=context.parent.id)
        fresh = [o for o in singles if genome_hash(o.genome) not in context.tried]
        pairs = not fresh or search.stalled(context.parent, context.candidates, objective)
        return search.compose(parent_genome, singles, (elite.id, validate(elite.genome or {})) if elite else None,
                              pairs=pairs, check=validate, max_pairs=MAX_PAIRS)

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
        floors = scoring.noise_floors(baselines, objective)     # the baselines' seeds: the run's noise floor
        found = scoring.verdict(candidate, parent, objective, floors) if parent is not None else None
        if found is not None:
            evidence.update({k: v for k, v in ((f"delta_{metric}", found.delta), (f"parent_{metric}", found.other),
                                               (f"floor_{metric}", found.floor)) if v is not None and math.isfinite(v)})
            line = (f"Against its parent {parent.id}, {metric} at {found.fidelity} went from {found.other:.3f} to "
                    f"{found.value:.3f}, {found.text()}; the change {found.trend()}")
            mine, theirs = merged_metrics(candidate), merged_metrics(parent)
            costs = [f"{cost} {theirs[cost]:,.0f} -> {mine[cost]:,.0f} ({(mine[cost] - theirs[cost]) / theirs[cost]:+.1%})"
                     for cost in objective.costs if mine.get(cost) and theirs.get(cost)]
            parts.append(line + (f"; {', '.join(costs)}." if costs else "."))
        parts += [line for line in [scoring.baselines_text(candidate, baselines, objective, floors)] if line]
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
