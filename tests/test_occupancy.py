"""Worker occupancy (`archlab.occupancy`): right on a hand-computed log, and shown by a real run and `archlab show`."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from agents.events import read_events
from archlab import occupancy
from tests.runs_support import archlab, only_run


def log(*lines: tuple[float, str, str]) -> list[SimpleNamespace]:
    """Log lines as the meter reads them (`occupancy.LogLine`) at the given times: (time, type, job id or "")."""
    return [SimpleNamespace(seq=k, time=t, type=kind, data=SimpleNamespace(job_id=job))
            for k, (t, kind, job) in enumerate(lines)]


# Two workers, three sessions (hand-computed below):
#   session 1, 0..12 s: a 1-5, b 3-7, c 4-8 (c waits for a slot: three logged in flight, two workers busy);
#     a static check's result at 10 s started nothing;
#     busy worker-seconds 2 (1-3) + 2 (3-4) + 2 (4-5) + 4 (5-7) + 1 (7-8) = 11; no job 0-1 and 8-12: 5 s.
#   the 88 s between sessions do not count, nor the second from opening the log again (a torn line repaired)
#   to `run_resumed`;
#   session 2, 100..105 s: d from 101, still running when the session's last event came (killed with it): busy 4,
#     no job 1 s;
#   session 3, 200..204 s: d is gone; e 202-203: busy 1, no job 3 s.
#   In all: wall 12 + 5 + 4 = 21 s, busy 16 worker-seconds, occupancy 16 / (21 * 2), no job 9 s, 5 jobs.
SYNTHETIC = log((0, "run_started", ""), (1, "job_started", "a"), (3, "job_started", "b"),
                (4, "job_started", "c"), (5, "result", "a"), (7, "result", "b"), (8, "result", "c"),
                (10, "result", "static-check"), (12, "run_finished", ""),
                (99, "log_repaired", ""), (100, "run_resumed", ""), (101, "job_started", "d"),
                (105, "round_started", ""),
                (200, "run_resumed", ""), (202, "job_started", "e"), (203, "result", "e"),
                (204, "run_finished", ""))


def test_occupancy_of_a_log_with_known_overlaps_matches_the_hand_computed_figures():
    found = occupancy.of_events(SYNTHETIC, workers=2)
    assert found.wall_seconds == pytest.approx(21)
    assert found.busy_seconds == pytest.approx(16)
    assert found.value == pytest.approx(16 / 42)
    assert found.no_job_seconds == pytest.approx(9)
    assert found.jobs == 5 and found.running == 0


def test_one_worker_counts_a_queued_job_once_and_a_sandbox_error_ends_a_job():
    events = log((0, "run_started", ""), (0, "job_started", "a"), (0, "job_started", "b"), (2, "result", "a"),
                 (3, "sandbox_error", "b"), (4, "run_finished", ""))
    found = occupancy.of_events(events, workers=1)
    assert found.busy_seconds == pytest.approx(3) and found.value == pytest.approx(3 / 4)


def test_a_live_reading_carries_the_jobs_in_flight_on_to_now():
    meter = occupancy.Meter(2)
    for event in SYNTHETIC[:5]:                 # up to a's result at 5 s: b and c in flight
        meter.feed(event)
    now = meter.reading(now=6)
    assert now.busy_now == 2 and now.running == 2
    assert now.wall_seconds == pytest.approx(6) and now.busy_seconds == pytest.approx(8)
    assert now.live_text() == "workers 2/2 busy, occupancy 0.67 so far"
    # a reading between two others is a stretch of the run (a round): 5..8 s has b and c, then c alone
    earlier = meter.reading()
    for event in SYNTHETIC[5:7]:
        meter.feed(event)
    stretch = meter.reading().since(earlier)
    assert stretch.wall_seconds == pytest.approx(3) and stretch.busy_seconds == pytest.approx(5)


def test_spans_on_a_benchmarks_clock():
    found = occupancy.of_spans([(0, 2), (1, 3), (3, 4)], workers=2, begin=0, end=5)
    # [0,1] one, [1,2] two, [2,3] one, [3,4] one, [4,5] none: 5 worker-seconds of 10; no job 1 s
    assert found.busy_seconds == pytest.approx(5) and found.value == pytest.approx(0.5)
    assert found.no_job_seconds == pytest.approx(1)


def test_workers_of_a_finished_run_come_from_its_settings():
    assert occupancy.recorded_workers({"executor": {"workers": 3}, "loop": {"batch": 2}}) == 3
    assert occupancy.recorded_workers({"executor": {"workers": None}, "loop": {"batch": 2}}) == 2


SUMMARY = re.compile(r"worker occupancy (\d\.\d\d): mean (\d\.\d\d) of (\d+) worker\(s\) busy over (\d+) s "
                     r"\((\d+) jobs")


def test_a_real_run_and_show_print_its_occupancy(tmp_path):
    proc = archlab("run", "--task", "mqar", "--rounds", "1", "--random-pool", "0", "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = SUMMARY.search(proc.stdout)
    assert found, proc.stdout[-3000:]
    value, workers, jobs = float(found.group(1)), int(found.group(3)), int(found.group(5))
    assert 0 < value <= 1 and workers == 2
    run_dir = only_run(tmp_path)
    events = read_events(run_dir / "events.jsonl")[0]
    assert jobs == sum(e.type == "job_started" for e in events) > 0
    live = re.search(r"workers (\d)/2 busy, occupancy (\d\.\d\d) so far", proc.stdout)   # the progress display
    assert live and 0 < float(live.group(2)) <= 1, proc.stdout[-3000:]
    shown = archlab("show", run_dir.name, "--runs-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    again = SUMMARY.search(shown.stdout)
    assert again and again.group(1) == found.group(1) and again.group(3) == "2"
