"""Sandbox: where candidate code runs.

Owns the `Sandbox` and `Worker` protocols (the wire records `EvalJob` and `EvalResult` live in
`wire`), their backends (`process`, and `docker` where an engine is reachable), warm one-shot
workers (`sandbox.warm`, over `sandbox.handoff`), the process backend's cgroups
(`sandbox.cgroups`) and zygote (`sandbox.zygote`, which forks its jobs' processes), and the
in-sandbox runner (`sandbox.runner`). Imports nothing from
`agents`, `knowledge` or `archlab`; the runner imports only `evaluators`, `wire` and the
standard library.
"""
