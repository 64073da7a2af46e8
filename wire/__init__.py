"""The wire records: what crosses the sandbox wall and every package line beneath `agents`.

`wire.task` holds `TaskSpec` (what a task is, its shapes and budgets per fidelity);
`wire.jobs` holds `Limits`, `EvalJob` (one evaluation going in) and `EvalResult` (its
classified outcome coming back). This package is the ground floor: it imports only pydantic
and the standard library, so `sandbox`, `evaluators`, `agents` and the in-sandbox runner can
all import it without a cycle.
"""
