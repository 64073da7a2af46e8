"""The `bench` fidelity: inference latency, throughput and peak memory, with the environment they came from.

Runs inside the sandbox after `check`. One forward pass of a batch (`BENCH_BATCH` samples of
the task's `example_input`) is timed:

- warm-up passes first (`WARMUP`), then repeats until the 95% confidence interval of the
  median is within `REL_CI` (5%) of the median, or `MAX_REPEATS` / `MAX_SECONDS` is reached;
  the interval comes from order statistics (distribution-free: ranks n/2 -/+ 1.96 sqrt(n)/2);
- on GPU each pass is timed with CUDA events after `torch.cuda.synchronize()`; on CPU with
  `time.perf_counter`, torch's intra-op threads pinned to the job's CPU allowance;
- reported: `latency_ms_median`, `latency_ms_p90`, `latency_cv` (coefficient of variation:
  std / mean over the repeats), `latency_ci_rel` (the interval's half-width over the median,
  so a reader sees whether it converged), `bench_repeats`, `throughput` (samples, or tokens
  for sequence tasks, per second at the median), and `peak_memory_bytes` of one pass;
- peak memory: `torch.cuda.max_memory_allocated` on GPU; on CPU, where torch keeps no
  allocator statistics, the peak of live tensor bytes created during one pass, tracked with
  a `TorchDispatchMode` (see `peak_memory`).

Every number goes out with `environment()`: torch version, device, threads, CPU model, GPU
name; compare latencies only between equal environments. What this does not control: other
processes on the machine (the CV tells you how noisy it was), CPU frequency scaling, and
first-call effects beyond the warm-up.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import math
import platform
import statistics
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from wire.task import TaskSpec

if TYPE_CHECKING:
    from evaluators.tasks.base import Task

BENCH_BATCH = 8       # samples per timed forward pass
WARMUP = 3            # untimed passes first
MIN_REPEATS = 10      # at least this many timed passes
MAX_REPEATS = 200     # at most this many
MAX_SECONDS = 20.0    # stop repeating after this much timing
REL_CI = 0.05         # stop once the median's 95% CI half-width is within 5% of the median


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, str]:
    """What a latency depends on, as strings (they travel in the runner report's `environment`)."""
    env = {"torch": torch.__version__, "device": str(device), "threads": str(torch.get_num_threads()),
           "cpu_model": cpu_model(), "machine": platform.machine()}
    if device.type == "cuda":
        env["gpu_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
    return env


def median_ci(samples: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """(median, low, high): a distribution-free ~95% interval of the median from order statistics."""
    ordered = sorted(samples)
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return statistics.median(ordered), ordered[lo], ordered[hi]


def time_repeats(fn, device: torch.device, warmup: int = WARMUP, min_repeats: int = MIN_REPEATS,
                 max_repeats: int = MAX_REPEATS, max_seconds: float = MAX_SECONDS,
                 rel_ci: float = REL_CI) -> list[float]:
    """Seconds per call of `fn`, repeated until the median is pinned down (see the module docstring)."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_repeats:
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            samples.append(begin.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        if len(samples) >= min_repeats:
            median, lo, hi = median_ci(samples)
            if (hi - lo) / 2 <= rel_ci * median or time.perf_counter() - started > max_seconds:
                break
    return samples


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storage created under it and still alive; remembers the peak."""

    def __init__(self):
        super().__init__()
        self.refs: dict[int, int] = {}     # storage pointer -> live tensors using it
        self.sizes: dict[int, int] = {}    # storage pointer -> bytes
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        self.refs[ptr] -= 1
        if self.refs[ptr] == 0:
            self.current -= self.sizes.pop(ptr)
            del self.refs[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in self.refs:
                    self.refs[ptr] = 0
                    self.sizes[ptr] = storage.nbytes()
                    self.current += self.sizes[ptr]
                    self.peak = max(self.peak, self.current)
                self.refs[ptr] += 1
                weakref.finalize(t, self._release, ptr)
        return out


def peak_memory(fn, device: torch.device) -> tuple[float, str]:
    """(bytes, method): the memory one call of `fn` needs at its peak, above what was allocated before.

    GPU: `torch.cuda.max_memory_allocated` minus the allocation before the call. CPU: torch
    keeps no allocator statistics there, so every tensor created during the call is tracked
    through a `TorchDispatchMode` and the peak of their live bytes is taken (parameters and
    inputs, created before, are not counted; memory outside tensors, such as the allocator's
    slack or oneDNN scratch space, is not seen).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before), "cuda_max_memory_allocated"
    tracker = _LiveTensorBytes()
    with tracker:
        fn()
    return float(tracker.peak), "live_tensor_bytes"


def run_bench(task: Task, spec: TaskSpec, model: torch.nn.Module, device: torch.device,
              batch: int = BENCH_BATCH, **timing) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, environment) for inference of `model` on a batch of `batch` example inputs."""
    model = model.to(device).eval()
    x = task.example_input(spec, batch, seed=spec.seed + 7).to(device)

    def forward():
        with torch.no_grad():
            model(x)

    samples = time_repeats(forward, device, **timing)
    median, lo, hi = median_ci(samples)
    mean = statistics.fmean(samples)
    cv = statistics.stdev(samples) / mean if len(samples) > 1 and mean > 0 else 0.0
    p90 = sorted(samples)[min(len(samples) - 1, int(math.ceil(0.9 * len(samples))) - 1)]
    units = batch * (spec.seq_len if task.token_input else 1)
    memory, method = peak_memory(forward, device)
    metrics = {"latency_ms_median": median * 1e3, "latency_ms_p90": p90 * 1e3, "latency_cv": cv,
               "latency_ci_rel": (hi - lo) / 2 / median if median > 0 else 0.0,
               "bench_repeats": float(len(samples)), "bench_batch": float(batch),
               "throughput": units / median if median > 0 else 0.0, "peak_memory_bytes": memory}
    env = environment(device)
    env["peak_memory_method"] = method
    env["throughput_unit"] = "tokens/s" if task.token_input else "samples/s"
    return metrics, env
