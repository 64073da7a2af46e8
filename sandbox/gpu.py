"""Hands out GPU indices to jobs, so that concurrent jobs never share a GPU unless told to.

Thread-safe within one process (the local worker pool runs jobs in threads). The number of
GPUs comes from `CUDA_VISIBLE_DEVICES`-style configuration or `nvidia-smi -L`; a machine
with none has an allocator of size 0, and asking it for a GPU is a clear error.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from contextlib import contextmanager
from typing import Iterator


def detect_gpus() -> list[str]:
    """Indices of the host's NVIDIA GPUs, as strings; empty without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class NotEnoughGpus(RuntimeError):
    pass


class GpuAllocator:
    def __init__(self, devices: list[str] | None = None, share: bool = False):
        self.devices = list(detect_gpus() if devices is None else devices)
        self.share = share                   # True: several jobs may hold the same GPU
        self._busy: dict[str, int] = {d: 0 for d in self.devices}
        self._cond = threading.Condition()

    def _free(self) -> list[str]:
        return [d for d in self.devices if self.share or self._busy[d] == 0]

    @contextmanager
    def acquire(self, count: int, timeout: float | None = None) -> Iterator[list[str]]:
        """Hold `count` GPUs for the duration of the block; waits while they are busy."""
        if count == 0:
            yield []
            return
        if count > len(self.devices):
            raise NotEnoughGpus(f"a job asked for {count} GPU(s) but this machine has {len(self.devices)}; "
                                "lower sandbox.gpus or run on a GPU machine")
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._free()) >= count, timeout=timeout):
                raise NotEnoughGpus(f"no {count} GPU(s) became free within {timeout} s")
            held = sorted(self._free(), key=lambda d: self._busy[d])[:count]
            for d in held:
                self._busy[d] += 1
        try:
            yield held
        finally:
            with self._cond:
                for d in held:
                    self._busy[d] -= 1
                self._cond.notify_all()
