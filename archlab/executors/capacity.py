"""How many jobs a machine runs at once, and with how many threads and GPUs each.

`executor.workers` unset: as many workers as the cores allow at `sandbox.cpus` threads each
(every core when that is unset too), no more than the GPUs allow at `sandbox.gpus` per job
(unless `executor.share_gpus`), and no more than the memory allows at `sandbox.memory_mb`
per job. Threads per job, when `sandbox.cpus` is unset, split the cores evenly, so workers ×
threads ≤ cores. The result says why, and the CLI prints it at start.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Capacity:
    workers: int
    cpus_per_job: float
    gpus_per_job: int
    gpus: tuple[str, ...]      # the machine's GPU indices the executor may hand out
    why: str

    def describe(self) -> str:
        gpus = f", {self.gpus_per_job} GPU(s) per training job of {len(self.gpus)}" if self.gpus_per_job else ""
        return f"{self.workers} worker(s) × {self.cpus_per_job:g} thread(s){gpus} ({self.why})"


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_memory_mb() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    except (ValueError, OSError, AttributeError):
        return None


def plan_capacity(workers: int | None, cpus: float | None, gpus_per_job: int, memory_mb: int,
                  share_gpus: bool = False, cores: int | None = None, gpus: tuple[str, ...] | None = None,
                  total_memory_mb: int | None = None) -> Capacity:
    """Workers, threads per job and the GPUs to hand out; a request the machine cannot meet is a ValueError."""
    cores = cores or machine_cores()
    if gpus is None:
        from sandbox.gpu import detect_gpus
        gpus = tuple(detect_gpus()) if gpus_per_job else ()
    total_memory_mb = total_memory_mb if total_memory_mb is not None else machine_memory_mb()
    if gpus_per_job > len(gpus):
        raise ValueError(f"setting 'sandbox.gpus': a training job asks for {gpus_per_job} GPU(s) and this machine "
                         f"has {len(gpus)}")
    if workers is not None:
        why = "executor.workers"
        if gpus_per_job and not share_gpus and workers * gpus_per_job > len(gpus):
            raise ValueError(f"setting 'executor.workers': {workers} workers × {gpus_per_job} GPU(s) need "
                             f"{workers * gpus_per_job} GPUs and this machine has {len(gpus)}; lower the workers "
                             "or set executor.share_gpus = true")
    else:
        limits = {"cores": max(1, int(cores // (cpus or 1)))}
        if gpus_per_job and not share_gpus:
            limits["GPUs"] = len(gpus) // gpus_per_job
        if total_memory_mb:
            limits["memory"] = max(1, total_memory_mb // memory_mb)
        bound = min(limits, key=lambda name: limits[name])
        workers = max(1, limits[bound])
        why = f"from the {bound}: " + ", ".join(f"{k} allow {v}" for k, v in limits.items())
    threads = cpus if cpus is not None else max(1, cores // workers)
    return Capacity(workers=workers, cpus_per_job=float(threads), gpus_per_job=gpus_per_job, gpus=tuple(gpus),
                    why=why)
