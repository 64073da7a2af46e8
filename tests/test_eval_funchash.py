"""Functional hashing: rewrites of one function collide, different functions do not."""
import ast

import pytest
import torch

from agents.offline.blocks import render
from evaluators.funchash import functional_hash, round_significant
from sandbox.base import RunnerReport
from tests.eval_support import load_source, run_job

BASE = render({"mixer": "softmax", "d_model": 32, "n_layers": 1, "n_heads": 2})


def fhash(source: str, spec) -> str:
    from evaluators.tasks import get_task
    return functional_hash(load_source(source), get_task(spec.name), spec, torch.device("cpu"))


def renamed(source: str) -> str:
    for old, new in (("Mixer", "CausalSelfAttention"), ("FeedForward", "MLPBlock"), ("make_norm", "norm_layer"),
                     ("CONFIG", "SETTINGS"), ("h = self.norm1(x)", "hidden = self.norm1(x)"),
                     ("self.mixer(h)", "self.mixer(hidden)")):
        assert old in source
        source = source.replace(old, new)
    return source


def reordered(source: str) -> str:
    tree = ast.parse(source)
    head = [n for n in tree.body if not isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    defs = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    tree.body = head + defs[::-1]
    return ast.unparse(tree)


def commented(source: str) -> str:
    return "# a comment at the top\n" + source.replace("    def forward(self, x):", "    # why\n    def forward(self, x):")


@pytest.mark.parametrize("rewrite", [renamed, ast.unparse, reordered, commented],
                         ids=["renamed", "reformatted", "reordered", "comments"])
def test_rewrites_of_the_same_function_collide(tiny_spec, rewrite):
    source = rewrite(ast.parse(BASE)) if rewrite is ast.unparse else rewrite(BASE)
    assert source != BASE
    assert fhash(source, tiny_spec) == fhash(BASE, tiny_spec)


@pytest.mark.parametrize("other", [
    render({"mixer": "linear", "d_model": 32, "n_layers": 1, "n_heads": 2}),
    render({"mixer": "softmax", "d_model": 48, "n_layers": 1, "n_heads": 2}),
    BASE.replace("    return Model(", "    model = Model(").replace(
        'CONFIG["ffn_mult"])\n', 'CONFIG["ffn_mult"])\n    with torch.no_grad():\n        model.head.weight.mul_(2.0)\n'
        '    return model\n'),
], ids=["different-mixer", "different-width", "different-init-scale"])
def test_different_functions_do_not_collide(tiny_spec, other):
    assert other != BASE
    assert fhash(other, tiny_spec) != fhash(BASE, tiny_spec)


def test_rounding_keeps_four_significant_digits_and_flushes_zeros():
    values = round_significant([123456.0, 0.00123449, -2.71828, 1e-9, -0.0])
    assert list(values) == [123500.0, 0.001234, -2.718, 0.0, 0.0]


def test_check_reports_the_hash_and_the_host_validates_it(tmp_path, tiny_spec):
    result = run_job(tmp_path, BASE, tiny_spec, "check")
    assert result.status == "ok", result.message
    assert result.environment["functional_hash"] == fhash(BASE, tiny_spec)
    with pytest.raises(ValueError):
        RunnerReport.model_validate({"status": "ok", "functional_hash": "not-hex; rm -rf"})
    with pytest.raises(ValueError):
        RunnerReport.model_validate({"status": "ok", "functional_hash": "a" * 65})
