"""archlab: the application shell — settings, CLI, run store, and the wiring of agents, sandbox and knowledge."""

__version__ = "0.1.0"
