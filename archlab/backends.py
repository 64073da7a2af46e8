"""Builds a run's pluggable backends from its settings: the research engine and the executor (the sandbox:
`archlab.sandboxes`, which a Ray node builds too).

The factories live in the application shell, not beside the interfaces they return, so that
`agents` and `sandbox` never import the modules that choose between their implementations.
"""
from __future__ import annotations

from agents.engine import EngineUnavailable, ResearchEngine
from archlab.settings import Settings
from sandbox.base import Sandbox


def make_engine(name: str, seed: int, settings: Settings | None = None) -> ResearchEngine:
    """The research engine called `name` (`offline` or `openai`); EngineUnavailable says what is missing.
    Offline, the engine is the one of the task's search space (`agents.spaces`): without settings, mqar's."""
    if name == "offline":
        from agents.spaces import task_space
        from evaluators.tasks import get_task
        task = get_task(settings.task if settings is not None else "mqar")
        space = task_space(task)
        if space is None:
            raise EngineUnavailable(f"the offline engine searches a task's declared search space, and {task.name} "
                                    "declares none; use --llm openai")
        return space.engine(seed)
    if name == "openai":
        if settings is None:
            raise EngineUnavailable("the openai engine is built from settings (llm.base_url, models, key variable); "
                                    "pass the loaded Settings")
        from agents.llm.engine import OpenAIEngine
        return OpenAIEngine.from_settings(settings, seed)
    raise EngineUnavailable(f"the {name!r} research engine is not available in this build; use --llm offline")


def capacity(settings: Settings):
    """Workers, threads per job and GPUs for this machine (or, with executor.backend = "ray", the Ray cluster,
    connecting to it: RayClusterUnavailable when there is none) under these settings (`archlab.executors.capacity`)."""
    from archlab.executors.capacity import plan_capacity
    from archlab.settings import SettingsError
    s = settings.sandbox
    try:
        if settings.executor.backend == "ray":
            return _ray().cluster_capacity(settings)
        return plan_capacity(settings.executor.workers, s.cpus, s.gpus, s.memory_mb, settings.executor.share_gpus)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _ray():
    """`archlab.executors.ray_executor`; SettingsError when Ray is not installed."""
    try:
        from archlab.executors import ray_executor
    except ImportError as exc:
        from archlab.settings import SettingsError
        raise SettingsError(f"setting 'executor.backend': 'ray' needs Ray ({exc}); pip install 'archlab[ray]'") from None
    return ray_executor


def make_executor(settings: Settings, sandbox: Sandbox, on_event=lambda kind, **info: None):
    """The configured executor over `sandbox` (`ray`: the sandbox backend of the same name, on the cluster's
    nodes); a run's jobs all go through it."""
    if settings.executor.backend == "ray":
        return _ray().RayExecutor(settings, capacity(settings), on_event=on_event)
    from archlab.executors.local import LocalExecutor
    return LocalExecutor(sandbox, capacity(settings), warm=settings.executor.warm, on_event=on_event)
