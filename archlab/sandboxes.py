"""Builds the configured sandbox backend from the settings: on this machine, and on each Ray node.

Apart from `archlab.backends` because a Ray node's worker (`archlab.executors.ray_executor`)
builds its own sandbox, and the backends module imports the executors.
"""
from __future__ import annotations

from archlab.settings import Settings
from sandbox.base import Sandbox, SandboxUnavailable


def make_sandbox(settings: Settings) -> Sandbox:
    """The configured sandbox backend; SandboxUnavailable when it cannot run here."""
    if settings.sandbox.backend == "process":
        from sandbox.process import ProcessSandbox
        return ProcessSandbox(start=settings.sandbox.start)
    try:
        from sandbox.docker_backend import DockerSandbox
    except ImportError as exc:
        raise SandboxUnavailable(f"the docker backend is not available: {exc}") from None
    return DockerSandbox.connect(image=settings.sandbox.image)
