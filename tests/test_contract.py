"""The `check` fidelity holds candidates to the contract, inside the real process sandbox."""
import pytest

from agents.offline.blocks import render
from evaluators.baselines import BASELINES, NAMES, baseline_source

GOOD = render({"mixer": "softmax"})


def test_shipped_baselines_are_what_the_renderer_writes():
    import ast
    for name in NAMES:
        genome, source = BASELINES[name]
        doc = ast.get_docstring(ast.parse(source))
        title, _, motivation = doc.partition("\n\n")
        assert render(genome, title=title, motivation=motivation.replace("\n", " ")) == baseline_source(name)
    assert {BASELINES[n][0]["mixer"] for n in NAMES} == {"softmax", "linear", "none"}


def test_a_good_model_passes_check_with_params_and_flops(run_source):
    result = run_source(GOOD)
    assert result.status == "ok", result.message
    assert result.metrics["params"] > 10_000
    assert result.metrics["flops_per_token"] > 0


def test_non_causal_model_is_refused(run_source):
    source = GOOD.replace("is_causal=True", "is_causal=False")
    result = run_source(source)
    assert result.status == "invalid"
    assert "not causal" in result.message


def test_batch_mixing_model_is_refused(run_source):
    source = GOOD.replace("        return self.head(self.norm(x))",
                          "        x = x + x.mean(dim=0, keepdim=True)\n        return self.head(self.norm(x))")
    result = run_source(source)
    assert result.status == "invalid"
    assert "batch" in result.message


def test_wrong_shape_is_refused_with_the_expected_shape(run_source):
    source = GOOD.replace("        return self.head(self.norm(x))", "        return self.head(self.norm(x))[:, -1]")
    result = run_source(source)
    assert result.status == "invalid"
    assert "expected logits of shape" in result.message


def test_zero_parameter_and_oversized_models_are_refused(run_source):
    zero = "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return torch.zeros(*x.shape, 64)\n" \
           "def build_model(spec):\n    return M()\n"
    assert "no trainable parameters" in run_source(zero).message
    big = GOOD.replace('"d_model": 64', '"d_model": 512')
    result = run_source(big)
    assert result.status == "invalid" and "over the budget" in result.message


def test_nan_output_is_refused(run_source):
    source = GOOD.replace("        return self.head(self.norm(x))", "        return self.head(self.norm(x)) * float('nan')")
    result = run_source(source)
    assert result.status == "invalid" and "NaN" in result.message


def test_raising_candidate_is_an_error_with_its_traceback(run_source):
    source = GOOD.replace("def build_model(spec):\n", "def build_model(spec):\n    raise ValueError('bad width')\n")
    result = run_source(source)
    assert result.status == "error"
    assert "ValueError: bad width" in result.message and "candidate.py" in result.message


def test_syntax_error_is_invalid_with_the_line(run_source):
    result = run_source("def build_model(spec):\n    return (\n")
    assert result.status == "invalid" and "line" in result.message


@pytest.mark.parametrize("name", NAMES)
def test_short_training_returns_host_scored_accuracy(run_source, name):
    result = run_source(baseline_source(name), fidelity="short")
    assert result.status == "ok", result.message
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["heldout_loss"] > 0
    assert len(result.curve) > 0 and result.metrics["steps"] == 40
