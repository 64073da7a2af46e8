"""The evaluator-gaming conformance suite: every gaming case, on every task it applies to, on both backends.

Beside the hostile suite (`tests/test_sandbox_conformance.py`, which attacks the host), these
candidates attack the score (`tests/gaming_cases.py`; the decode task's procedures, which are
timed rather than scored on predictions, have their own cases in `tests/gaming_decode_cases.py`,
run on both backends by `tests/test_decode_gaming.py`).
Each runs as a real job through the harness in a warm sandbox of each backend (in docker, the
rules the backend itself enforces on every task, the host's rules on MQAR: `_runs_on`) and
is held to the rule that must stop it:
- `no_gain`: status ok, and the score is no better than the honest model's (the same network,
  trained the same way, without the trick); where the trick reports what it found, it found
  nothing;
- `invalid`: a classified failure whose message says what was refused;
- `capped`: the CPU the job got per wall second is within its allowance.
A capability a backend lacks is declared and the case that needs it skips saying so; under CI
nothing skips. The module also holds the harness's own rule checks: a task whose held-out set
is public is refused, and a sandbox that cannot hide the host's secret runs no scored job.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from evaluators import heldout
from evaluators.harness import evaluate
import evaluators.tasks
from evaluators.tasks import get_task
from evaluators.tasks.mqar import MQAR
from tests import gaming_cases
from tests.gaming_cases import sandboxes, warm_sandbox as _sandbox  # noqa: F401 - a fixture, found by name
from tests.conftest import under_ci
from tests.eval_support import load_source
from wire.jobs import EvalJob, Limits

BACKENDS = ("process", "process-exec", "docker")     # process: forked from the zygote (the default start)
NO_GAIN_MARGIN = 0.02      # accuracy; the trick, had it worked, scores near 1.0
_ids = itertools.count()


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """Tiny instances of every task (charlm twice: the default secret corpus and a user's file)."""
    corpus = tmp_path_factory.mktemp("gaming-corpus") / "corpus.txt"
    rng = np.random.default_rng(1)
    corpus.write_bytes(bytes(rng.integers(ord("a"), ord("z") + 1, 60_000).astype(np.uint8)))
    return {
        "mqar": get_task("mqar").default_spec(seq_len=32, num_pairs=4, num_queries=4, short_steps=30),
        "charlm": get_task("charlm").default_spec(corpus_bytes=60_000, seq_len=32, positions=2, heldout_size=32,
                                                  short_steps=30),
        "charlm-file": get_task("charlm").default_spec(corpus=str(corpus), seq_len=32, positions=2,
                                                       heldout_size=32, short_steps=30),
        "digits": get_task("digits").default_spec(short_steps=30),
    }


def _expand(task: str) -> list[str]:
    return ["charlm", "charlm-file"] if task == "charlm" else [task]


# the rules a backend itself enforces; the others are the host's (validation, scoring) and hold whatever ran the job
BACKEND_RULES = ("heldout_out_of_reach", "resources_enforced")


def _runs_on(backend: str, spec_name: str, case) -> bool:
    """Every case on every task in the process backend as it starts by default (forked from its zygote); with a
    fresh interpreter per job (`process-exec`) the backend's own rules, which are all that the start changes, on
    every task; in docker (a container start per job, slow on 2 cores), those and the host's rules on MQAR."""
    if backend == "process-exec":
        return case.rule in BACKEND_RULES
    return backend == "process" or case.rule in BACKEND_RULES or spec_name == "mqar"


def _params():
    return [pytest.param(backend, spec_name, case, id=f"{backend}-{spec_name}-{case.name}",
                         marks=[pytest.mark.docker] if backend == "docker" else [])
            for backend in BACKENDS for case in gaming_cases.CASES
            for task in case.tasks for spec_name in _expand(task) if _runs_on(backend, spec_name, case)]


def _run(sandbox, spec, source: str, tmp_path: Path):
    job = EvalJob(job_id=f"g{next(_ids)}", candidate_id="gaming", source=source, task=spec, fidelity="short",
                  limits=Limits(wall_seconds=120, memory_mb=3072, cpus=1))
    return evaluate(sandbox, job, tmp_path / job.job_id), tmp_path / job.job_id


def _need(sandbox, capability: str) -> None:
    if capability not in sandbox.capabilities:
        message = f"the {sandbox.name} backend declares no {capability!r} on this machine"
        if under_ci():
            pytest.fail(f"under CI every gaming case must run: {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def honest_scores():
    return {}


def _honest(request, backend: str, spec_name: str, spec, tmp_path: Path) -> float:
    scores = request.getfixturevalue("honest_scores")
    if (backend, spec_name) not in scores:
        result, _ = _run(_sandbox(request, backend), spec, gaming_cases.HONEST, tmp_path)
        assert result.status == "ok", result.message
        scores[backend, spec_name] = result.metrics["accuracy"]
    return scores[backend, spec_name]


def _source(case, spec) -> str:
    home = Path.home()
    shape = get_task(spec.name).expected_prediction_shape(spec.at("short"))
    return (case.source.replace("HOST_SECRETS", str(heldout.secrets_dir())).replace("HOST_HOME", str(home))
            .replace("SHAPE", repr(tuple(shape))))


@pytest.mark.parametrize("backend, spec_name, case", _params())
def test_gaming_case_is_stopped_by_its_rule(request, backend, spec_name, case, specs, tmp_path):
    sandbox = _sandbox(request, backend)
    spec = specs[spec_name]
    for capability in ("hidden_home", "hidden_paths") if case.rule == "heldout_out_of_reach" else ():
        _need(sandbox, capability)
    if case.expect == "capped":
        _need(sandbox, "cpu_quota")
    result, jobdir = _run(sandbox, spec, _source(case, spec), tmp_path)
    log = result.log_tail
    if case.expect == "invalid":
        assert result.status in ("invalid", "error"), (result.status, result.message)
        assert case.message in result.message, result.message
        assert "accuracy" not in result.metrics
        return
    assert result.status == "ok", (result.status, result.message, log[-2000:])
    if case.expect == "capped":
        ratio = float(re.search(r"GAMING cpu_ratio=([0-9.]+)", log).group(1))
        assert ratio <= 1.25, f"8 busy threads got {ratio:.2f} CPU-seconds per second under a 1-CPU allowance"
        # (on a loaded machine the ratio alone could pass unenforced: the job also sees its quota of one CPU)
        assert re.search(r"GAMING quota=([0-9.]+)", log) and float(re.search(r"GAMING quota=([0-9.]+)", log).group(1)) \
            == pytest.approx(1.0), log[-1000:]
        return
    honest = _honest(request, backend, spec_name, spec, tmp_path)
    assert result.metrics["accuracy"] <= honest + NO_GAIN_MARGIN, (result.metrics, honest, log[-2000:])
    found = [int(n) for n in re.findall(r"GAMING found=(\d+)", log)]
    if gaming_cases.LOOKUP in case.source:    # the trick ran when the model was scored, and found nothing
        assert found, f"the lookup never ran when the model was scored: {log[-2000:]}"
    assert not any(found), f"the trick found held-out answers inside the sandbox: {found}"
    if case.message:
        assert case.message in log, log[-2000:]
    if case.name == "patch_evaluator":        # the forged number was written, and not believed
        import json
        claimed = json.loads((jobdir / "out" / "report.json").read_text())["metrics"]
        assert claimed["accuracy"] == 1.0 and result.metrics["accuracy"] < 1.0


@pytest.mark.parametrize("spec_name", ["mqar", "charlm", "charlm-file", "digits"])
def test_the_held_out_tricks_do_win_where_nothing_stops_them(spec_name, specs):
    """The suite's lookup cheats are real: run on the host, outside any sandbox, they find every held-out answer.
    (So a `no_gain` above is the sandbox and the secret at work, not a trick that never worked.)"""
    spec = specs[spec_name]
    steal_secret = load_source(_source(gaming_cases.CASES[0], spec), f"steal_{spec_name.replace('-', '_')}")
    inputs, answers = get_task(spec.name).heldout(spec.at("short"), heldout.machine_secret())
    table = steal_secret.lookup_table(*steal_secret.steal(spec))
    assert len(table) == len(steal_secret.lookup_table(inputs, answers)) > 0
    if spec_name in ("charlm-file", "digits"):            # the public data itself holds the answers
        reader = load_source(gaming_cases.READ_PUBLIC_DATA, f"read_{spec_name.replace('-', '_')}")
        stolen = reader.steal(spec)
        if reader.TEXT:
            table = reader.text_table(stolen, spec.seq_len)
            windows = inputs["tokens"].reshape(-1, spec.seq_len)
            hits = [table.get(reader.key_of(w)) for w in windows]
            assert all(h is not None and h[0][1] == a for h, a in zip(hits, answers.reshape(-1)))
        else:
            table = reader.lookup_table(*stolen)
            assert all(table[reader.key_of(image)][0][1] == label for image, label in zip(inputs["images"], answers))


class PublicMQAR(MQAR):
    """MQAR as it was: the held-out set drawn from a public seed."""

    def heldout(self, spec, secret):
        return super().heldout(spec, b"a fixed, public value")


def test_a_task_whose_held_out_set_is_public_is_refused(monkeypatch, specs, tmp_path, process_sandbox):
    public = PublicMQAR()
    public.name = "mqar"
    monkeypatch.setitem(evaluators.tasks._loaded, "mqar", public)
    with pytest.raises(heldout.HeldoutRuleError, match="same held-out targets whatever the host's secret is"):
        _run(process_sandbox, specs["mqar"], gaming_cases.HONEST, tmp_path)
    heldout.check_rule(get_task("digits"), specs["digits"])     # public data, but its files are declared hidden


class BlindSandbox:
    """A sandbox that hides nothing (the process backend on a machine without namespaces)."""
    name = "blind"
    capabilities = frozenset({"pid_limit"})

    def run(self, job, jobdir):
        raise AssertionError("a job whose held-out set this sandbox cannot protect must not run")


def test_a_sandbox_that_cannot_hide_the_secret_runs_no_scored_job(specs, tmp_path):
    result, _ = _run(BlindSandbox(), specs["mqar"], gaming_cases.HONEST, tmp_path)
    assert result.status == "sandbox_error"
    assert "cannot keep held-out data out of the candidate's reach" in result.message
    assert "hidden_home" in result.message and "--sandbox docker" in result.message
