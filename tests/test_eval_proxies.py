"""The `proxy` fidelity: finite, stable zero-cost proxies, and failures classified rather than crashing."""
import math

import pytest
import torch
import torch.nn as nn

from agents.offline.blocks import render
from evaluators.proxies import ERF_FLOOR, activation_bytes, effective_receptive_field, naswot, synflow, wpca
from tests.eval_support import load_source, run_job

GOOD = render({"mixer": "softmax", "d_model": 32, "n_layers": 1, "n_heads": 2})
PROXIES = ("params", "flops", "activation_bytes", "synflow", "grad_norm", "snip", "naswot", "wpca", "erf",
           "proxy_seconds")


def deep_linear(layers: int, width: int, scale: float | None = None) -> nn.Module:
    model = nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(layers)])
    if scale is not None:
        with torch.no_grad():
            for layer in model:
                layer.weight.copy_(scale * torch.eye(width))
    return model


def naive_float32_synflow(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones_like(x)).sum().backward()
    return torch.stack([(p * p.grad).sum() for p in model.parameters()]).sum().item()   # float32 throughout


def test_synflow_stays_finite_where_naive_float32_overflows():
    torch.manual_seed(0)
    x = torch.zeros(1, 64)
    assert not math.isfinite(naive_float32_synflow(deep_linear(80, 64), x))
    torch.manual_seed(0)
    score = synflow(deep_linear(80, 64), x, token_input=False)
    assert math.isfinite(score) and score > math.log(3.4e38)               # beyond float32's range, as a log


def test_synflow_beyond_float64_is_recovered_exactly_in_log_space():
    # 400 layers of 10*I on 4 units: R = 4 * 10^400, and every layer contributes R, so S = 400 * R (Euler)
    layers, width = 400, 4
    score = synflow(deep_linear(layers, width, scale=10.0), torch.zeros(1, width), token_input=False)
    expected = math.log(layers) + math.log(width) + layers * math.log(10.0)
    assert score == pytest.approx(expected, rel=1e-9)


def test_naswot_and_wpca_see_capacity():
    torch.manual_seed(0)
    x = torch.randn(16, 8, 32)

    def mlp(hidden):
        class FeedForward(nn.Module):
            def __init__(self):
                super().__init__()
                self.up, self.down = nn.Linear(32, hidden), nn.Linear(hidden, 32)

            def forward(self, h):
                return self.down(torch.relu(self.up(h)))
        return nn.Sequential(FeedForward())

    assert wpca(mlp(64), x) > wpca(mlp(4), x) > 0
    assert naswot(mlp(64), x) > naswot(mlp(4), x)
    assert activation_bytes(mlp(64), x) > activation_bytes(mlp(4), x)


def test_erf_separates_models_that_can_look_far_back(tiny_spec):
    from evaluators.fidelities import build
    from evaluators.tasks import get_task
    x = get_task("mqar").example_input(tiny_spec, 4, seed=0)
    reach = {}
    for mixer in ("softmax", "conv", "none"):
        module = load_source(render({"mixer": mixer, "d_model": 32, "n_layers": 1, "n_heads": 2}), f"erf_{mixer}")
        reach[mixer] = effective_receptive_field(build(module, tiny_spec, 0), x)
    assert reach["none"] == pytest.approx(math.log(ERF_FLOOR))              # sees only its own token
    assert reach["softmax"] > -3.0 > reach["conv"]                           # attention reaches a quarter back


def test_proxy_fidelity_reports_every_proxy_as_a_finite_number(tmp_path, tiny_spec):
    result = run_job(tmp_path, GOOD, tiny_spec, "proxy")
    assert result.status == "ok", result.message
    for name in PROXIES:
        assert math.isfinite(result.metrics[name]), name
    assert result.metrics["params"] > 0 and result.metrics["flops"] > 0 and result.metrics["wpca"] >= 1
    assert len(result.environment["functional_hash"]) == 64


@pytest.mark.parametrize("change, status, words", [
    ("return self.head(self.norm(x)) * float('nan')", "invalid", "NaN"),
    ("return self.head(self.norm(x)).to(torch.int64)", "invalid", "dtype"),
    # finite forward, NaN gradients: sqrt'(0) = inf, times 0
    ("return self.head(self.norm(x)) + 0.0 * torch.sqrt(x - x).sum()", "error", "not finite"),
])
def test_broken_models_get_a_classified_result(tmp_path, tiny_spec, change, status, words):
    source = GOOD.replace("return self.head(self.norm(x))", change)
    assert source != GOOD
    result = run_job(tmp_path, source, tiny_spec, "proxy")
    assert result.status == status and words in result.message, result.message
