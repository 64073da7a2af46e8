"""Per-job cgroups for the process backend: pids, memory and CPU groups, cgroup v1 or v2.

- pids: `pids.max` caps the processes and threads of the job and everything it starts, even
  for root (for whom the kernel ignores RLIMIT_NPROC).
- memory: `memory.limit_in_bytes` (v1) or `memory.max` (v2) caps the job's resident memory,
  all its processes together, at exactly `Limits.memory_mb`; swap is switched off for the
  group where the kernel accounts it (`memory.memsw.limit_in_bytes`, `memory.swap.max`). When
  the kernel's OOM killer fires inside the group, `oom_kills()` says so (v1
  `memory.oom_control`, v2 `memory.events`), and the backend reports status `oom`.
- cpu: a CFS quota of `Limits.cpus` CPUs (v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`, v2
  `cpu.max`): however many threads the job starts, all its processes together get at most
  `cpus` CPU-seconds per wall second; past that the kernel throttles them until the next
  100 ms period (its `cpu.stat` counts those periods as `nr_throttled`).
- at the end `kill_all()` SIGKILLs whatever is left in the groups and removes them.
Groups are named `archlab-<owner pid>-<job>-<random>`; `sweep()` removes those of owners that
died without cleaning up. Only root can create them here; elsewhere a group is a no-op and
`memory_cgroup_works()` / `cpu_cgroup_works()` are False (the backend then declares that only
address space and CPU seconds are limited).

What the groups do not give: a job that can write to the cgroup filesystem (root, not
confined) could move itself out of them; the process backend declares the limits it relies
on them for accordingly. No CPU affinity is set: a job may widen its own affinity mask at
will, so only the quota is a limit, and pinning concurrent jobs to the same cores would make
them compete for those while the others idle.
"""
from __future__ import annotations

import functools
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Callable

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_PIDS = CGROUP_ROOT / "pids"
V1_MEMORY = CGROUP_ROOT / "memory"
V1_CPU = CGROUP_ROOT / "cpu"
CPU_PERIOD_US = 100_000           # the CFS period: a job over its quota waits at most this long


def _v2_with(controller: str) -> bool:
    """Whether /sys/fs/cgroup is a unified (v2) hierarchy whose children may use `controller`."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.is_file() or controller not in controllers.read_text().split():
        return False
    subtree = CGROUP_ROOT / "cgroup.subtree_control"
    if controller not in subtree.read_text().split():
        try:
            subtree.write_text(f"+{controller}")
        except OSError:
            return False
    return True


def _hierarchy(controller: str) -> Path | None:
    """Where groups for `controller` are created: its v1 hierarchy, the v2 root, or None."""
    if os.geteuid() != 0:
        return None
    v1 = CGROUP_ROOT / controller
    if (v1 / "cgroup.procs").is_file():
        return v1
    try:
        return CGROUP_ROOT if _v2_with(controller) else None
    except OSError:
        return None


class JobCgroup:
    """The pids, memory and cpu groups of one job (or one warm worker); each part is absent where it cannot be made.

    `memory_mb` None: no memory group; `cpus` None: no CPU quota."""

    def __init__(self, name: str, max_pids: int, memory_mb: int | None, cpus: float | None = None):
        self.paths: list[Path] = []
        self.pids: Path | None = None
        self.memory: Path | None = None
        self.cpu: Path | None = None
        label = f"archlab-{os.getpid()}-{name}-{uuid.uuid4().hex[:6]}"
        pids_root = _hierarchy("pids")
        memory_root = _hierarchy("memory") if memory_mb else None
        cpu_root = _hierarchy("cpu") if cpus else None
        if pids_root is not None:
            self.pids = self._make(pids_root / label, [("pids.max", str(max_pids))])
        if memory_root is not None:
            limit = str(memory_mb * 1024 * 1024)
            if memory_root == CGROUP_ROOT:         # v2: one group holds every controller
                settings = [("memory.max", limit), ("memory.swap.max?", "0"), ("memory.oom.group?", "1")]
            else:
                settings = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes?", limit),
                            ("memory.swappiness?", "0")]
            self.memory = self._make(memory_root / label, settings)
        if cpu_root is not None:
            quota = str(max(1000, round(cpus * CPU_PERIOD_US)))    # the kernel's minimum quota is 1 ms
            if cpu_root == CGROUP_ROOT:
                settings = [("cpu.max", f"{quota} {CPU_PERIOD_US}")]
            else:
                settings = [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", quota)]
            self.cpu = self._make(cpu_root / label, settings)

    def _make(self, path: Path, settings: list[tuple[str, str]]) -> Path | None:
        """Create `path` (or reuse it, v2) and write its settings; a setting ending in '?' is best effort."""
        try:
            path.mkdir(exist_ok=True)
        except OSError:
            return None
        created = path not in self.paths          # v2: the group another part made is shared, and kept
        if created:
            self.paths.append(path)
        for name, value in settings:
            try:
                (path / name.rstrip("?")).write_text(value)
            except OSError:
                if not name.endswith("?"):
                    if created:
                        self.paths.remove(path)
                        _remove(path)
                    return None
        return path

    def lower_memory(self, limit_bytes: int) -> None:
        """Lower the memory group's limit (a job forked from the zygote shares memory the zygote was charged for:
        `sandbox.zygote.inherited_bytes`). Never raises it, and never below 16 MB."""
        if self.memory is None:
            return
        value = str(max(16 * 1024 * 1024, limit_bytes))
        if self.memory.parent == CGROUP_ROOT:
            names = ["memory.max"]
        else:      # v1: memsw must stay >= the memory limit, so the memory limit is lowered first
            names = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        for name in names:
            try:
                (self.memory / name).write_text(value)
            except OSError:
                if name == names[0]:
                    raise

    def enter(self) -> None:
        """Called in the child before exec: the child and all its descendants join the groups."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in the memory group so far."""
        if self.memory is None:
            return 0
        name = "memory.events" if self.memory.parent == CGROUP_ROOT else "memory.oom_control"
        try:
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self) -> None:
        """SIGKILL every process left in the groups and remove them (idempotent)."""
        for path in self.paths:
            _kill_members(path)
        for path in self.paths:
            _remove(path)
        self.paths, self.pids, self.memory, self.cpu = [], None, None, None


def _kill_members(path: Path) -> None:
    for _ in range(100):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _remove(path: Path) -> None:
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


@functools.cache
def memory_cgroup_works() -> bool:
    """Whether a memory group with a limit can be created here (tried once)."""
    group = JobCgroup("probe", 64, 64)
    works = group.memory is not None
    group.kill_all()
    return works


@functools.cache
def cpu_cgroup_works() -> bool:
    """Whether a cpu group with a CFS quota can be created here (tried once)."""
    group = JobCgroup("probe", 64, None, cpus=1.0)
    works = group.cpu is not None
    group.kill_all()
    return works


def pids_cgroup_works() -> bool:
    return _hierarchy("pids") is not None


def sweep(alive: Callable[[int], bool]) -> int:
    """Kill the members of, and remove, the groups of archlab processes that are gone; returns how many."""
    swept = 0
    for root in (V1_PIDS, V1_MEMORY, V1_CPU, CGROUP_ROOT):
        if not root.is_dir() or not os.access(root, os.W_OK):
            continue
        for path in root.glob("archlab-*"):
            try:
                owner = int(path.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if not path.is_dir() or alive(owner):
                continue
            _kill_members(path)
            _remove(path)
            swept += 1
    return swept
