"""Builds a run's pluggable backends from its settings: the research engine and the sandbox.

The factories live in the application shell, not beside the interfaces they return, so that
`agents` and `sandbox` never import the modules that choose between their implementations.
"""
from __future__ import annotations

from agents.engine import EngineUnavailable, ResearchEngine
from archlab.settings import Settings
from sandbox.base import Sandbox, SandboxUnavailable


def make_engine(name: str, seed: int, settings: Settings | None = None) -> ResearchEngine:
    """The research engine called `name` (`offline` or `openai`); EngineUnavailable says what is missing."""
    if name == "offline":
        from agents.offline.engine import OfflineEngine
        return OfflineEngine(seed)
    if name == "openai":
        if settings is None:
            raise EngineUnavailable("the openai engine is built from settings (llm.base_url, models, key variable); "
                                    "pass the loaded Settings")
        from agents.llm.engine import OpenAIEngine
        return OpenAIEngine.from_settings(settings, seed)
    raise EngineUnavailable(f"the {name!r} research engine is not available in this build; use --llm offline")


def make_sandbox(settings: Settings) -> Sandbox:
    """The configured sandbox backend; SandboxUnavailable when it cannot run here."""
    if settings.sandbox.backend == "process":
        from sandbox.process import ProcessSandbox
        return ProcessSandbox()
    try:
        from sandbox.docker_backend import DockerSandbox
    except ImportError as exc:
        raise SandboxUnavailable(f"the docker backend is not available: {exc}") from None
    return DockerSandbox.connect(image=settings.sandbox.image)


def capacity(settings: Settings):
    """Workers, threads per job and GPUs for this machine under these settings (`archlab.executors.capacity`)."""
    from archlab.executors.capacity import plan_capacity
    s = settings.sandbox
    try:
        return plan_capacity(settings.executor.workers, s.cpus, s.gpus, s.memory_mb, settings.executor.share_gpus)
    except ValueError as exc:
        from archlab.settings import SettingsError
        raise SettingsError(str(exc)) from None


def make_executor(settings: Settings, sandbox: Sandbox, on_event=lambda kind, **info: None):
    """The configured executor over `sandbox`; a run's jobs all go through it."""
    from archlab.executors.local import LocalExecutor
    return LocalExecutor(sandbox, capacity(settings), warm=settings.executor.warm, on_event=on_event)
