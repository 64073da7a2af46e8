"""The language-model references (`evaluators.baselines.lm_baselines`), the scale read from `spec.data`, and the
training loop's accumulation and GPU paths (`evaluators.fidelities.train`).

Everything runs on an MQAR spec whose `data` carries a rung's width, depth and heads, as the lm task's does, so
these tests need nothing of the lm task itself. The GPU path runs only where CUDA is present (the skip says so);
`tests/gpu_lm_check.py` is the longer GPU check for a GPU machine.
"""
from __future__ import annotations

import sys
import types

import pytest
import torch

from agents.offline.blocks import render, validate
from evaluators import fidelities
from evaluators.baselines import LM_NAMES, lm_baselines
from evaluators.tasks import get_task

RUNG = {"d_model": 64, "n_layers": 2, "n_heads": 2}          # the lm ladder's bottom rung


def module_of(source: str, name: str):
    module = types.ModuleType(name)
    sys.modules[name] = module                                 # dataclasses and pickling look modules up by name
    exec(compile(source, name, "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def task():
    return get_task("mqar")


@pytest.fixture(scope="module")
def spec(task):
    # 20 steps drop every baseline's loss by 0.7 or more (measured); `learns` asks for 0.2
    base = task.default_spec(short_steps=20, short_seq_len=24, short_num_pairs=4)
    return base.model_copy(update={"data": {**base.data, **RUNG}})


@pytest.fixture(scope="module")
def modules():
    return {name: module_of(source, f"lm_{name}") for name, (_, source) in lm_baselines().items()}


def test_lm_baselines_are_three_families_with_catalogue_genomes():
    found = lm_baselines()
    assert tuple(found) == LM_NAMES == ("lm_transformer", "lm_gla", "lm_mamba")
    for genome, source in found.values():
        validate(genome)                                       # the engine can take each as a parent
        assert "def build_model(spec)" in source
    assert "scaled_dot_product_attention" in found["lm_transformer"][1]


@pytest.mark.parametrize("name", LM_NAMES)
def test_each_baseline_passes_the_sequence_contract_at_the_rung(name, task, spec, modules):
    model = fidelities.build(modules[name], spec, 0)
    metrics = fidelities.check(task, spec, model, torch.device("cpu"))
    assert metrics["params"] > 0 and metrics.get("flops", 1) > 0
    assert model.embed.embedding_dim == RUNG["d_model"]      # the width is the rung's, not CONFIG's


@pytest.mark.parametrize("name", LM_NAMES)
def test_each_baseline_is_causal_past_chunk_boundaries(name, spec, modules):
    torch.manual_seed(0)
    model = modules[name].build_model(spec).eval()
    ids = torch.randint(0, spec.vocab_size, (2, 45))          # 45: not a multiple of the 16-token chunks
    changed = ids.clone()
    changed[:, 30:] = torch.randint(0, spec.vocab_size, (2, 15))
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :30], b[:, :30], atol=1e-5)
    assert not torch.allclose(a[:, 30:], b[:, 30:], atol=1e-3)


def test_the_chunked_forms_equal_their_recurrences(modules):
    torch.manual_seed(0)
    B, H, T, dk, dv = 2, 3, 37, 5, 4
    q, k, v = torch.randn(B, H, T, dk), torch.randn(B, H, T, dk), torch.randn(B, H, T, dv)
    log_a = torch.nn.functional.logsigmoid(torch.randn(B, H, T, dk))
    state, want = torch.zeros(B, H, dk, dv), []
    for t in range(T):                                         # S_t = diag(a_t) S_{t-1} + k_t v_t^T, o_t = q_t S_t
        state = state * log_a[:, :, t].exp().unsqueeze(-1) + k[:, :, t].unsqueeze(-1) * v[:, :, t].unsqueeze(-2)
        want.append((q[:, :, t].unsqueeze(-2) @ state).squeeze(-2))
    got = modules["lm_gla"].chunked_gla(q, k, v, log_a, 8)
    assert torch.allclose(got, torch.stack(want, 2), atol=1e-4)

    scalar = log_a[..., 0]                                     # Mamba-2: one decay per head and step
    state, want = torch.zeros(B, H, dk, dv), []
    for t in range(T):
        state = state * scalar[:, :, t].exp()[..., None, None] + k[:, :, t].unsqueeze(-1) * v[:, :, t].unsqueeze(-2)
        want.append((q[:, :, t].unsqueeze(-2) @ state).squeeze(-2))
    got = modules["lm_mamba"].chunked_ssd(q, k, v, scalar, 8)
    assert torch.allclose(got, torch.stack(want, 2), atol=1e-4)


@pytest.mark.parametrize("name", LM_NAMES)
def test_each_baseline_learns(name, task, spec, modules):
    instance = spec.at("short")
    model = fidelities.build(modules[name], instance, 0)
    trained = fidelities.train(task, instance, model, spec.budgets["short"], 0, torch.device("cpu"))
    assert trained["curve"][-1] < trained["curve"][0] - 0.2, trained["curve"]


def test_one_module_scales_with_the_rung(spec, modules):
    bigger = spec.model_copy(update={"data": {**spec.data, "d_model": 96, "n_layers": 3, "n_heads": 3}})
    for name, module in modules.items():
        small, large = (fidelities.count_params(module.build_model(s)) for s in (spec, bigger))
        assert large > 1.5 * small, name
    # a rendered candidate of the block catalogue follows the rung too, and keeps its genome's size without one
    source = render({"mixer": "gated_linear", "d_model": 32, "n_layers": 1, "n_heads": 4})
    rendered = module_of(source, "lm_rendered")
    model = rendered.build_model(spec)
    assert model.embed.embedding_dim == 64 and len(model.blocks) == 2
    plain = spec.model_copy(update={"data": {k: v for k, v in spec.data.items() if k not in RUNG}})
    model = rendered.build_model(plain)
    assert model.embed.embedding_dim == 32 and len(model.blocks) == 1


def test_accumulation_gives_the_whole_batchs_gradient_and_training(task, spec):
    source = render({"mixer": "softmax", "d_model": 32, "n_layers": 1, "n_heads": 2})
    module = module_of(source, "lm_accumulate")
    instance = spec.at("short")
    x, y = task.train_batch(instance, torch.Generator().manual_seed(1), 12)
    whole = fidelities.build(module, instance, 0)
    task.loss(whole(x), y).backward()
    split = fidelities.build(module, instance, 0)
    loss = fidelities._accumulated(task, split, x, y, 4, torch.device("cpu"), torch.autocast("cpu", enabled=False))
    for a, b in zip(whole.parameters(), split.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert loss.item() == pytest.approx(task.loss(whole(x), y).item(), abs=1e-5)

    budget = spec.budgets["short"].model_copy(update={"steps": 6})
    runs = [fidelities.train(task, instance, fidelities.build(module, instance, 0),
                             budget.model_copy(update={"accumulate": parts}), 0, torch.device("cpu"))
            for parts in (1, 3)]
    assert runs[0]["curve"] == pytest.approx(runs[1]["curve"], abs=1e-4)


def test_the_gpu_settings_leave_a_specs_wire_form_alone(spec):
    budget = spec.budgets["short"]
    assert "accumulate" not in budget.model_dump_json() and "compile" not in budget.model_dump_json()
    changed = budget.model_copy(update={"accumulate": 4, "compile": True})
    assert type(budget).model_validate_json(changed.model_dump_json()) == changed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU path (bf16 autocast, fused "
                                                          "AdamW, compile) runs only on a GPU machine; see "
                                                          "tests/gpu_lm_check.py")
@pytest.mark.parametrize("name", LM_NAMES)
def test_gpu_path_trains_in_bf16(name, task, spec, modules):
    device = torch.device("cuda")
    instance = spec.at("short")
    model = fidelities.build(modules[name], instance, 0)
    trained = fidelities.train(task, instance, model, spec.budgets["short"].model_copy(update={"accumulate": 2}), 0,
                               device)
    assert trained["curve"][-1] < trained["curve"][0] - 0.2
    assert trained["peak_memory_mb"] > 0


def test_a_runs_last_lines_say_whether_the_best_proposal_beats_the_best_random_reference(capsys):
    from agents import scoring
    from archlab import cli
    from evaluators.fitness import Objective
    from tests.test_noise_floor import baseline, child

    objective = Objective(metric="accuracy")
    pool = [baseline("b-softmax", 0.50), baseline("b-linear", 0.40), baseline("b-mlp", 0.30)]
    reference = child("r-01", 0.55, parent="b-mlp").model_copy(update={"status": "reference", "parent_ids": []})

    def last_line(proposal_accuracy: float) -> str:
        candidates = [*pool, reference, child("c001", proposal_accuracy)]
        cli._print_best(candidates, objective, scoring.noise_floors(candidates, objective))
        return " ".join(capsys.readouterr().out.split()).split("search vs random: ")[-1]

    inside = last_line(0.56)                                   # 0.01 above the reference: inside the 0.02 floor
    assert inside.startswith("the best proposal c001 does not beat the best random reference r-01 beyond the noise")
    beyond = last_line(0.60)
    assert beyond.startswith("the best proposal c001 beats the best random reference r-01 beyond the noise floor")
    cli._print_best([*pool, child("c001", 0.60)], objective, scoring.noise_floors(pool, objective))
    assert "no random reference was measured" in " ".join(capsys.readouterr().out.split())


def test_a_runs_last_lines_say_whether_the_best_proposal_keeps_its_lead_one_rung_up(capsys):
    """At `full` (lm: one rung up), over three seeds each: the proposal that led at short keeps its lead, or not."""
    from agents import scoring
    from archlab import cli
    from evaluators.fitness import Objective
    from tests.test_noise_floor import baseline, child, result

    objective = Objective(metric="accuracy")

    def at_full(candidate, values):
        runs = [result(candidate.id, "full", seed=k, accuracy=v) for k, v in enumerate(values)]
        mean = result(candidate.id, "full", accuracy=sum(values) / len(values))
        return candidate.model_copy(update={"evaluations": {**candidate.evaluations, "full": mean},
                                            "seeds": {**candidate.seeds, "full": runs}})

    def line(proposal_at_full) -> str:
        candidates = [at_full(baseline("b-softmax", 0.50), [0.60, 0.61, 0.62]),
                      at_full(child("c001", 0.58), proposal_at_full)]
        cli._print_one_rung_up(candidates, objective, scoring.noise_floors(candidates, objective))
        return " ".join(capsys.readouterr().out.split())

    assert "the best proposal c001 keeps its lead over the best baseline b-softmax" in line([0.70, 0.71, 0.72])
    assert "the best proposal c001 does not keep its lead over the best baseline b-softmax" in line([0.60, 0.62, 0.61])
    cli._print_one_rung_up([baseline("b-softmax", 0.50), child("c001", 0.58)], objective, {})
    assert capsys.readouterr().out == ""          # nothing trained at full: nothing to say
