"""The decode task's gaming cases (`tests/gaming_decode_cases.py`) on the process backend: each is stopped by its rule.

A case is stopped when its job is refused with a message naming what it broke (`invalid`), or
when it is scored no faster than its honest twin, greedy decoding with a KV cache, or its
output is not greedy's (`no_gain`). The shared suite (`tests/test_gaming_conformance.py`)
runs the same cases on both backends; this module keeps them next to the decode task, on a
spec small enough for about a minute on two cores.
"""
from __future__ import annotations

import pytest

from tests.conftest import under_ci

from evaluators import landlock
from tests.decode_support import TINY_DECODE, run_decode
from tests.gaming_decode_cases import DECODE_CASES, HONEST_DECODE, no_gain

QUICK = {**TINY_DECODE, "max_repeats": 6}    # the fewest passes that give a signed-rank interval


@pytest.fixture(scope="module")
def spec():
    from evaluators.tasks import get_task
    return get_task("decode").default_spec(**QUICK)


@pytest.fixture(scope="module")
def honest(spec, process_sandbox, tmp_path_factory):
    result = run_decode(spec, HONEST_DECODE, process_sandbox, tmp_path_factory.mktemp("honest"), "short")
    assert result.status == "ok", result.message + result.log_tail
    assert result.metrics["exact_match"] == 1.0
    return result


@pytest.mark.skipif(not landlock.available() and not under_ci(),
                    reason="timed decode jobs need Landlock (this kernel has none); under CI this fails instead")
@pytest.mark.parametrize("case", DECODE_CASES, ids=[c.name for c in DECODE_CASES])
def test_decode_gaming_case_is_stopped_by_its_rule(case, spec, honest, process_sandbox, tmp_path):
    if case.rule == "resources_enforced" and "cpu_quota" not in process_sandbox.capabilities:
        if under_ci():
            pytest.fail("under CI every gaming case must run: the process backend declares no cpu_quota here")
        pytest.skip("the process backend declares no cpu_quota on this machine")
    result = run_decode(spec, case.source, process_sandbox, tmp_path, case.fidelity)
    if case.expect == "invalid":
        assert result.status == "invalid", (result.status, result.message, result.log_tail[-2000:])
        assert case.message in result.message, result.message
        assert "speedup" not in result.metrics
        return
    assert result.status == "ok", (result.status, result.message, result.log_tail[-2000:])
    if "GAMING found=" in case.source:           # the trick ran on the timed calls
        assert "GAMING found=" in result.log_tail, result.log_tail[-2000:]
    assert no_gain(result, honest) == "", no_gain(result, honest)
    if case.rule == "host_computes_metric":      # the trick was fast, and the host saw that the text was not greedy's
        assert result.metrics["mismatch_rate"] > 0


@pytest.mark.filterwarnings("ignore::FutureWarning")    # its sweep of live objects touches torch's deprecated names
def test_the_warmup_cache_does_win_where_nothing_stops_it(spec, honest, tmp_path):
    """The warm-up exploit is real: run in one process that sees every pass's prompts, as the harness used to run it,
    it answers every timed prompt from its cache, far faster than greedy decoding."""
    import time

    import numpy as np
    import torch

    from evaluators.tasks import get_task
    from tests.eval_support import load_source
    from tests.gaming_decode_cases import WARMUP_CACHE
    task = get_task("decode")
    model, n = task.model(spec), spec.data["max_new_tokens"]
    prompts = torch.from_numpy(task.prompts(spec, "short"))            # every pass's prompts, in this frame
    module = load_source(WARMUP_CACHE, "warmup_cache_unconfined")
    module.places = lambda: [tmp_path]                                  # its store stays in this test's directory
    module.generate(model, prompts[0], n)                               # the warm-up, on a timed prompt
    started = time.perf_counter()
    cached = [module.generate(model, p, n) for p in prompts[1:]]
    cheat = time.perf_counter() - started
    started = time.perf_counter()
    honest_ids = [module.decode(model, p, n) for p in prompts[1:]]
    work = time.perf_counter() - started
    assert all(torch.equal(a, b) for a, b in zip(cached, honest_ids))
    assert cheat < work / 20, (cheat, work)
    assert np.isfinite(work)


@pytest.mark.skipif(not landlock.available() and not under_ci(),
                    reason="this kernel has no Landlock; under CI this fails instead")
def test_landlock_keeps_a_confined_process_to_its_rules(tmp_path):
    """What a candidate's pass process gets: its rules' paths, nothing else, by any route."""
    import os

    allowed, secret, scratch = (tmp_path / name for name in ("allowed", "secret", "scratch"))
    for folder in (allowed, secret, scratch):
        folder.mkdir()
    (allowed / "a.txt").write_text("public")
    (secret / "prompts.npy").write_text("later passes")
    (scratch / "link").symlink_to(secret / "prompts.npy")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                                   # the confined child reports what it could do
        outcome = []
        try:
            landlock.restrict([(allowed, landlock.READ), (scratch, landlock.EVERYTHING)])
            for path in (allowed / "a.txt", secret / "prompts.npy", scratch / "link",
                         f"/proc/{os.getppid()}/root{secret}/prompts.npy", f"/proc/{os.getppid()}/environ"):
                try:
                    open(path).read()
                    outcome.append("read")
                except OSError:
                    outcome.append("denied")
            for path in (scratch / "new.txt", allowed / "new.txt"):
                try:
                    open(path, "w").write("x")
                    outcome.append("wrote")
                except OSError:
                    outcome.append("denied")
        finally:
            os.write(write, " ".join(outcome).encode())
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1000).decode().split() == ["read", "denied", "denied", "denied", "denied", "wrote", "denied"]
