"""Sandbox: where candidate code runs.

Owns the `Sandbox` protocol (the wire records `EvalJob` and `EvalResult` live in `wire`) and its
backends (`process`, and `docker` where an engine is reachable), and the in-sandbox runner
(`sandbox.runner`). Imports nothing from `agents`, `knowledge` or `archlab`; the runner
imports only `evaluators`, `wire` and the standard library.
"""
