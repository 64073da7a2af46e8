"""Sandbox: where candidate code runs.

Owns `EvalJob`, `EvalResult` (in `sandbox.contract`), the `Sandbox` protocol and its
backends (`process`, and `docker` where an engine is reachable), and the in-sandbox runner
(`sandbox.runner`). Imports nothing from `agents`, `knowledge` or `archlab`; the runner
imports only `evaluators` and the standard library.
"""
