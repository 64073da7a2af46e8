"""Writes `tests/module_seconds.json`, the seconds each unit of `make test`'s scheduling took, from a JUnit XML report.

`tests/conftest.py` hands the costliest units to the pytest-xdist workers first; this measures
them. Regenerate after a module grows or shrinks by minutes (stale figures cost only balance):

    .venv/bin/python -m pytest -q -n 2 --dist loadfile --junitxml=/tmp/junit.xml
    .venv/bin/python -m tests.module_seconds /tmp/junit.xml

What it does not do: run the tests, or decide which tests run.
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from tests.conftest import MODULE_SECONDS, _xdist_scope


def node_id(classname: str) -> str:
    """`tests.e2e.test_docker_backend` (JUnit's classname for a module-level test) as its module's node id."""
    return classname.replace(".", "/") + ".py"


def measure(report: Path) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        nodeid = f"{node_id(case.get('classname', ''))}::{case.get('name', '')}"
        seconds[_xdist_scope(nodeid)] += float(case.get("time", 0.0))
    return {scope: round(total, 1) for scope, total in sorted(seconds.items(), key=lambda kv: -kv[1])}


if __name__ == "__main__":
    measured = measure(Path(sys.argv[1]))
    MODULE_SECONDS.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"{len(measured)} units, {sum(measured.values()):.0f} s in all, written to {MODULE_SECONDS}")
