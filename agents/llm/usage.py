"""Tokens and cost per role, summed from a run's `llm_response` events (earlier sessions included).

`usage_by_role(events)` -> {role: {calls, input_tokens, output_tokens, cost_usd, unpriced_calls,
largest_input_tokens}} for the roles that made calls (planner, coder, analyst; fixes are coder
calls). `input_tokens` are the prompt tokens; `largest_input_tokens` is the longest prompt a
role sent, the number that decides whether it fits a small local model's context. `calls`
counts answered requests; failed attempts (`llm_error`) cost nothing and are not counted.
`unpriced_calls` counts answers from models missing from `llm.prices`, whose cost is
reported as 0. The total over roles is what the `llm_cost_usd` budget is checked against.
`usage_by_model(events)` gives the same rows per (role, model).
"""
from __future__ import annotations

from typing import Iterable

from agents.event_types import LLMResponse
from agents.events import Event

ROLES = ("planner", "coder", "analyst")


def usage_by_role(events: Iterable[Event]) -> dict[str, dict]:
    return _usage(events, lambda p: p.role)


def usage_by_model(events: Iterable[Event]) -> dict[tuple[str, str], dict]:
    """The same rows per (role, model): what each model cost where a role lists several (`agents.llm.routing`)."""
    return _usage(events, lambda p: (p.role, p.model))


def _usage(events: Iterable[Event], key) -> dict:
    usage: dict = {}
    for event in events:
        p = event.data
        if not isinstance(p, LLMResponse):
            continue
        row = usage.setdefault(key(p), {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                                        "unpriced_calls": 0, "largest_input_tokens": 0})
        row["calls"] += 1
        row["input_tokens"] += p.input_tokens
        row["output_tokens"] += p.output_tokens
        row["cost_usd"] += p.cost_usd
        row["unpriced_calls"] += 0 if p.priced else 1
        row["largest_input_tokens"] = max(row["largest_input_tokens"], p.input_tokens)
    order = {role: i for i, role in enumerate(ROLES)}

    def rank(item):
        role = item[0][0] if isinstance(item[0], tuple) else item[0]
        return (order.get(role, len(ROLES)), item[0])
    return dict(sorted(usage.items(), key=rank))
