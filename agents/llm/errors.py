"""Whose fault it is when the `openai` backend cannot go on. Each message names the fix.

- `LLMConfigError`: the endpoint refused the request as configured (bad key, unknown model,
  unsupported option). Fix the settings.
- `LLMUnavailable`: the endpoint kept failing (429, 5xx, timeouts, dropped connections)
  after every retry, or could not be reached at all. Infrastructure; `archlab resume RUN`
  once it is back.
- `UnexpectedModelBehavior`: the model's answers stayed unusable (no code, wrong schema,
  refusals) after the bounded repairs. Try a stronger model or other structured-output settings.

All three are `EngineUnavailable`, so the CLI stops the run with the message (it can be
resumed) instead of a traceback — except an unusable plan, which the graph catches as a
`ProposalFailed`: that branch of the round ends without a candidate and the run goes on. `status` is the HTTP status of the last answer, when there
was one. Bad output that *can* go back to the model never raises: the engine repairs it
inside the call, and the graph's check/fix loop handles bad code.
"""
from __future__ import annotations

from agents.engine import EngineUnavailable, ProposalFailed


class LLMError(EngineUnavailable):
    """Base of the `openai` backend's stopping errors; `status` is the last HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LLMConfigError(LLMError):
    """The endpoint refused the request as configured."""


class LLMUnavailable(LLMError):
    """The endpoint did not answer usefully after every retry."""


class UnexpectedModelBehavior(LLMError, ProposalFailed):
    """The model's answers could not be used after the bounded repairs.

    Also a `ProposalFailed`: raised by the planner, it ends that branch of the round, not the
    run, so an unattended loop survives a model that answers badly for a while."""
