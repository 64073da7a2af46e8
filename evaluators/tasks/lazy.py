"""`torch` for task modules, imported on first use rather than when the module is imported.

Settings validation and `archlab tasks` import every task module to read its options and
contract; torch costs seconds to import, and a task module only needs it once it builds data
or scores. `from evaluators.tasks.lazy import torch` gives a stand-in whose first attribute
access imports the real module (annotations stay strings under `from __future__ import
annotations`, so they touch nothing). Nothing else belongs here.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class _Lazy(ModuleType):
    def __init__(self, name: str):
        super().__init__(name)
        self._target = name

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._target)
        return getattr(module, attr)


def module(name: str) -> ModuleType:
    """A stand-in for the module `name`, imported on first attribute access."""
    return _Lazy(name)


torch = module("torch")
