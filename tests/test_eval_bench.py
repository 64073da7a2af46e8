"""The `bench` fidelity: latency with its spread, throughput, peak memory, and the environment with them."""
import time

import torch

from agents.offline.blocks import render
from evaluators.bench import median_ci, peak_memory, time_repeats
from tests.eval_support import run_job

GOOD = render({"mixer": "softmax", "d_model": 32, "n_layers": 1, "n_heads": 2})


def test_bench_reports_latency_spread_memory_and_environment(tmp_path, tiny_spec):
    result = run_job(tmp_path, GOOD, tiny_spec, "bench")
    assert result.status == "ok", result.message
    m = result.metrics
    assert 0 < m["latency_ms_median"] <= m["latency_ms_p90"]
    assert m["latency_cv"] >= 0 and m["bench_repeats"] >= 10
    assert m["throughput"] > 0 and m["peak_memory_bytes"] > 0
    env = result.environment
    assert env["device"] == "cpu" and env["threads"] == "1" and env["cpu_model"] and env["torch"] == torch.__version__
    assert env["throughput_unit"] == "tokens/s"


def test_repeats_stop_when_the_median_is_pinned_and_at_the_cap():
    steady = time_repeats(lambda: time.sleep(0.002), torch.device("cpu"), min_repeats=10, max_repeats=100)
    assert 10 <= len(steady) < 100
    calls = iter(range(10_000))
    noisy = time_repeats(lambda: time.sleep(0.004 * (next(calls) % 2)), torch.device("cpu"),
                         min_repeats=5, max_repeats=15, rel_ci=0.001)
    assert len(noisy) == 15
    median, low, high = median_ci([1.0, 2.0, 3.0, 4.0, 100.0])
    assert median == 3.0 and low <= median <= high


def test_peak_memory_counts_what_one_call_allocates():
    small, method = peak_memory(lambda: torch.ones(1000) * 2, torch.device("cpu"))
    big, _ = peak_memory(lambda: torch.ones(1_000_000) * 2, torch.device("cpu"))
    assert method == "live_tensor_bytes" and small >= 4000 and big >= 4_000_000 > small
