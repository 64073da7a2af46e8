"""Evaluators: tasks (data + contract), fidelities (check, short), host-side scoring.

Owns `TaskSpec`. Code here runs on both sides of the sandbox wall: `evaluators.fidelities`
runs inside the sandbox with the candidate; `evaluators.scoring` runs on the trusted host and
turns the sandbox's predictions into metrics. Imports nothing from `agents`, `knowledge`,
`archlab` or the sandbox backends.
"""
