"""Where the graph writes a run's records: `candidates/<id>/` and the event log.

    candidates/<id>/candidate.py     the module as written
    candidates/<id>/candidate.json   the Candidate record (status, evaluations, analysis)
    candidates/<id>/result.json      the latest EvalResult
    candidates/<id>/log.txt          the sandbox log tails, newest last
    candidates/<id>/jobs/<job-id>/   the job directories the sandbox ran in
"""
from __future__ import annotations

import os
from pathlib import Path

from agents.events import EventLog
from agents.records import Candidate
from wire.jobs import EvalResult


class Recorder:
    def __init__(self, run_dir: Path, events: EventLog):
        self.run_dir = Path(run_dir)
        self.events = events
        (self.run_dir / "candidates").mkdir(parents=True, exist_ok=True)

    def candidate_dir(self, candidate_id: str) -> Path:
        path = self.run_dir / "candidates" / candidate_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def job_dir(self, candidate_id: str, job_id: str) -> Path:
        return self.candidate_dir(candidate_id) / "jobs" / job_id

    def save(self, candidate: Candidate) -> None:
        directory = self.candidate_dir(candidate.id)
        (directory / "candidate.py").write_text(candidate.source)
        _atomic_write(directory / "candidate.json", candidate.model_dump_json(indent=1))

    def save_result(self, candidate_id: str, result: EvalResult) -> None:
        directory = self.candidate_dir(candidate_id)
        _atomic_write(directory / "result.json", result.model_dump_json(indent=1))
        with (directory / "log.txt").open("a") as log:
            log.write(f"== {result.job_id} ({result.fidelity}): {result.status}\n{result.message}\n{result.log_tail}\n")

    def load(self, candidate_id: str) -> Candidate:
        return Candidate.model_validate_json((self.run_dir / "candidates" / candidate_id / "candidate.json").read_text())

    def load_all(self) -> list[Candidate]:
        return load_candidates(self.run_dir)


def load_candidates(run_dir: Path) -> list[Candidate]:
    found = []
    for path in sorted((Path(run_dir) / "candidates").glob("*/candidate.json")):
        found.append(Candidate.model_validate_json(path.read_text()))
    return found


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
