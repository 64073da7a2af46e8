"""Worker occupancy of a run, from its event log: the mean number of jobs in flight divided by the workers.

Owns the one computation of it that the run's summary (`archlab run`, `archlab show`), the live
progress display and the benchmarks (`benchmarks/throughput.py`, `benchmarks/loop_orchestration.py`)
all read. A job is in flight from its `job_started` event to its `result` (or `sandbox_error`);
a `result` with no `job_started` before it (a static check, which runs nothing) and a
`job_reused` (read back, not run) hold no worker and are not counted.

The count of busy workers at a moment is min(jobs in flight, workers): a job is logged as
started before it waits for a free slot, and the local executor queues a job only while every
slot is taken, so a queued job means every worker is busy, not that more than all are.

Time counts only while the run is being driven: a `run_started` or `run_resumed` (or the
`log_repaired` / `log_upgraded` that opening the log again writes first) opens a session, the
session's last event closes it, and the time between sessions (the run was
stopped or had crashed) is left out; a job still open when its session ended (killed with it)
counts up to that last event. A `Meter` is fed events one at a time and keeps running totals,
so reading it costs the same at the first event and at the millionth (the live display reads it
after every event).

What it does not do: know which worker slot ran a job (the log does not say), or the worker
count of a finished run by itself: the caller passes it (`recorded_workers` reads it from a
run's settings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

STARTS = ("job_started",)
ENDS = ("result", "sandbox_error")          # what answers a job_started
# where a stretch of driving the run begins: the run starts or resumes, or (just before, as the log is opened again)
# a torn line is repaired or old lines are upgraded
SESSIONS = ("run_started", "run_resumed", "log_repaired", "log_upgraded")


class LogLine(Protocol):
    """What the meter reads of an event (`agents.events.Event`)."""

    type: str
    time: float
    data: Any                   # the payload model (`agents.event_types`); job starts and ends have `job_id`


@dataclass(frozen=True)
class Occupancy:
    """Running totals over the time a run was driven, up to `at`."""

    workers: int
    wall_seconds: float         # time the run was being driven (sessions only)
    busy_seconds: float         # worker-seconds with a job: the integral of min(jobs in flight, workers)
    no_job_seconds: float       # time with no job in flight at all (the loop busy with itself, or waiting)
    jobs: int                   # jobs started
    running: int                # jobs in flight at `at`
    at: float                   # time of the reading (seconds since the epoch, or the caller's clock)

    @property
    def value(self) -> float:
        """Mean jobs in flight ÷ workers over the wall time, in [0, 1]; 0 before any time has passed."""
        if self.wall_seconds <= 0 or self.workers <= 0:
            return 0.0
        return self.busy_seconds / (self.wall_seconds * self.workers)

    @property
    def busy_now(self) -> int:
        return min(self.running, self.workers)

    def since(self, earlier: Occupancy) -> Occupancy:
        """The stretch between an earlier reading of the same meter and this one (a round, say)."""
        return Occupancy(self.workers, self.wall_seconds - earlier.wall_seconds,
                         self.busy_seconds - earlier.busy_seconds, self.no_job_seconds - earlier.no_job_seconds,
                         self.jobs - earlier.jobs, self.running, self.at)

    def text(self) -> str:
        """One line for the run's summary."""
        return (f"worker occupancy {self.value:.2f}: mean {self.value * self.workers:.2f} of {self.workers} "
                f"worker(s) busy over {self.wall_seconds:.0f} s ({self.jobs} jobs; no job in flight for "
                f"{self.no_job_seconds:.0f} s)")

    def live_text(self) -> str:
        """A few words for the progress display."""
        return f"workers {self.busy_now}/{self.workers} busy, occupancy {self.value:.2f} so far"


class Meter:
    """Occupancy fed event by event (in log order). Not thread-safe: `EventLog` calls its listeners under its lock."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"occupancy needs at least one worker, not {workers}")
        self.workers = workers
        self._open: set[str] = set()
        self._last: float | None = None     # time of the last event of the current session; None: no session yet
        self._wall = self._busy = self._idle = 0.0
        self._jobs = 0

    def feed(self, event: LogLine) -> None:
        self.tick(event.time, new_session=event.type in SESSIONS)
        if event.type in SESSIONS:
            self._open.clear()              # jobs of an earlier session died with it
        elif event.type in STARTS:
            self._open.add(event.data.job_id)
            self._jobs += 1
        elif event.type in ENDS:
            self._open.discard(event.data.job_id)

    def start(self, job_id: str, at: float) -> None:
        """A job outside any event log (a benchmark's own clock) started at `at`."""
        self.tick(at)
        self._open.add(job_id)
        self._jobs += 1

    def end(self, job_id: str, at: float) -> None:
        self.tick(at)
        self._open.discard(job_id)

    def tick(self, at: float, new_session: bool = False) -> None:
        """Bring the totals up to `at`; a new session leaves the time since the last one's end uncounted."""
        if self._last is not None and not new_session:
            step = max(0.0, at - self._last)        # a clock stepped back counts as no time
            self._wall += step
            self._busy += min(len(self._open), self.workers) * step
            self._idle += step if not self._open else 0.0
        self._last = at if self._last is None or new_session else max(self._last, at)

    def reading(self, now: float | None = None) -> Occupancy:
        """The totals at the last event, or carried on to `now` (the live display: the run goes on)."""
        wall, busy, idle = self._wall, self._busy, self._idle
        at = self._last if self._last is not None else 0.0
        if now is not None and self._last is not None and now > self._last:
            step = now - self._last
            wall, busy = wall + step, busy + min(len(self._open), self.workers) * step
            idle += step if not self._open else 0.0
            at = now
        return Occupancy(self.workers, wall, busy, idle, self._jobs, len(self._open), at)


def of_events(events: Iterable[LogLine], workers: int) -> Occupancy:
    """A run's occupancy over the time it was driven, from its events (`agents.events.read_events`)."""
    meter = Meter(workers)
    for event in events:
        meter.feed(event)
    return meter.reading()


def of_spans(spans: Iterable[tuple[float, float]], workers: int, begin: float, end: float) -> Occupancy:
    """Occupancy over [begin, end] of jobs given as (start, finish) times on one clock (a benchmark's own)."""
    points = []
    for k, (start, finish) in enumerate(spans):
        points += [(start, 1, str(k)), (finish, 0, str(k))]    # at a tie an end goes first: no false overlap
    meter = Meter(workers)
    meter.tick(begin)
    for at, kind, job in sorted(points):
        if kind:
            meter.start(job, at)
        else:
            meter.end(job, at)
    return meter.reading(end)


def logged_workers(events: Iterable[Any]) -> int | None:
    """The workers the run's latest session had, as its `run_started` / `run_resumed` logged them (None: not logged;
    `events` are `agents.events.Event`s, read as their typed payloads)."""
    found = None
    for event in events:
        if event.type in ("run_started", "run_resumed"):
            found = getattr(event.data, "workers", None) or found
    return found


def recorded_workers(settings: Mapping[str, Any]) -> int:
    """The workers a run had, from the settings its `run.json` recorded: `executor.workers` where set; where the
    machine chose, the run's `loop.batch`, which the run fixed to that choice when it started (a batch set by hand
    with workers left to the machine is taken for the workers: the log does not record the count)."""
    executor, loop = settings.get("executor") or {}, settings.get("loop") or {}
    return int(executor.get("workers") or loop.get("batch") or 1)
