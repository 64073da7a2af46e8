"""Test helpers for the docker backend: a sandbox when an engine is reachable, else a skip that says why."""
from __future__ import annotations

import os

import pytest


def docker_sandbox_or_skip():
    try:
        from sandbox.docker_backend import DockerSandbox
    except ImportError as exc:
        pytest.skip(f"docker backend not importable: {exc}")
    from sandbox.base import SandboxUnavailable
    try:
        return DockerSandbox.connect()
    except SandboxUnavailable as exc:
        if os.environ.get("ARCHLAB_REQUIRE_DOCKER") or os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI or ARCHLAB_REQUIRE_DOCKER is set but the docker backend is unavailable: {exc}")
        pytest.skip(f"no Docker Engine: {exc}")
