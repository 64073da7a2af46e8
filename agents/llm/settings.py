"""The `[llm]` section of the settings (`LLMSettings`) and model prices, defined where the LLM engine reads them.

`archlab.settings.Settings` uses `LLMSettings` as its `llm` section as it is: the application
shell imports the agents, never the other way round (`make lint`'s import contracts).
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class Price(BaseModel):
    input_per_mtok: float = Field(ge=0)                 # USD per million prompt tokens
    output_per_mtok: float = Field(ge=0)                # USD per million completion tokens


# USD per million tokens as OpenAI listed them in 2025; check the current list and override in [llm.prices]
DEFAULT_PRICES = {
    "gpt-4.1": Price(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": Price(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": Price(input_per_mtok=0.10, output_per_mtok=0.40),
    "gpt-4o": Price(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "o4-mini": Price(input_per_mtok=1.10, output_per_mtok=4.40),
}


class ModelEndpoint(BaseModel):
    """Where one model is served, when not at `llm.base_url` (`[llm.endpoints."<model>"]`)."""
    base_url: str                                       # an OpenAI-compatible URL, usually ending in /v1
    api_key_env: str | None = None                      # the NAME of the variable holding its key; None: llm.api_key_env


Models = str | list[str]     # one model for a role, or several for the router to choose among (`agents.llm.routing`)
ROLES = ("planner", "coder", "analyst")


class LLMSettings(BaseModel):
    backend: Literal["offline", "openai"] = "offline"   # who plans, codes and analyses
    base_url: str | None = None                         # an OpenAI-compatible endpoint; unset: $OPENAI_BASE_URL, else OpenAI's
    api_key_env: str = "OPENAI_API_KEY"                 # the NAME of the variable holding the key; the key is never stored
    # each role takes one model, or a list: then a bandit chooses one per candidate by its measured improvement
    # per dollar (per second of answer time where a model has no price), `routing_exploration` deciding how
    # much it tries the others (`agents.llm.routing`); the first model is the default
    planner_model: Models = "gpt-4.1-mini"              # states a hypothesis and one change per round
    coder_model: Models = "gpt-4.1-mini"                # writes and repairs candidate modules (as edits of the parent: coder_answer)
    analyst_model: Models = "gpt-4.1-mini"              # turns measured numbers into findings
    routing_exploration: float = Field(default=0.5, ge=0)  # the bandit's exploration weight (UCB); 0: always the best so far
    endpoints: dict[str, ModelEndpoint] = Field(default_factory=dict)  # model -> its own server; unlisted: base_url
    timeout_seconds: float = Field(default=120, gt=0)   # one HTTP attempt; a slow local model may need more
    max_retries: int = Field(default=4, ge=0)           # re-sends after 429, 5xx, timeouts and dropped connections
    backoff_seconds: float = Field(default=1.0, ge=0)   # first wait before a re-send, doubling each time
    max_backoff_seconds: float = Field(default=60, ge=0)  # cap on one wait, a server's Retry-After included
    max_concurrency: int = Field(default=4, ge=1)       # requests in flight at once, whatever calls the engine
    temperature: float | None = Field(default=0.7, ge=0, le=2)  # None: leave it to the server (reasoning models refuse it)
    max_output_tokens: int | None = Field(default=None, ge=1)   # sent as max_tokens; None: the server's default
    structured_outputs: Literal["auto", "on", "off"] = "auto"  # json_schema response_format; auto steps down to json_object, then text
    repair_attempts: int = Field(default=2, ge=0)       # unusable answers (no code, bad JSON, refusal) sent back per call
    novelty_threshold: float = Field(default=0.92, gt=0, le=1)  # a plan this close (cosine) to an earlier one is sent back
    novelty_retries: int = Field(default=2, ge=0)       # near-duplicates sent back before the proposal is taken anyway
    principles_k: int = Field(default=4, ge=0, le=20)   # literature principles shown to the planner
    # how the coder answers: "edits" = SEARCH/REPLACE blocks against the parent (the whole module only as a
    # fallback when they keep failing to apply); "module" = the whole module every time (the older protocol)
    coder_answer: Literal["edits", "module"] = "edits"
    edit_attempts: int = Field(default=2, ge=0)         # edits that do not apply sent back (with why) before the whole module is asked for
    space_changes: bool = True                          # the planner may name a change of the task's search space; the renderer writes its code
    plateau_after: int = Field(default=6, ge=1)         # proposals with no new best beyond the noise floor before the planner is told the run has plateaued
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))  # model (or prefix) -> price; unlisted costs 0

    @field_validator("temperature", "max_output_tokens", "base_url", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        # TOML and environment variables have no null: "none" or "" leaves the value to the server
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @field_validator("planner_model", "coder_model", "analyst_model", mode="after")
    @classmethod
    def _models(cls, value: Models) -> Models:
        if isinstance(value, list):
            value = list(dict.fromkeys(m.strip() for m in value if m.strip()))
            if not value:
                raise ValueError("name at least one model")
            return value[0] if len(value) == 1 else value
        if not value.strip():
            raise ValueError("name a model")
        return value.strip()

    def models(self, role: str) -> list[str]:
        """The models `role` may use, the default first."""
        value = {"planner": self.planner_model, "coder": self.coder_model, "analyst": self.analyst_model}[role]
        return [value] if isinstance(value, str) else list(value)

    @model_validator(mode="after")
    def _standard_base_url(self) -> "LLMSettings":
        if not self.base_url:                           # the openai client's own convention, honoured here once
            self.base_url = os.environ.get("OPENAI_BASE_URL") or None
        return self

    def api_key(self) -> str | None:
        """The key from the variable named by `api_key_env`, read when an engine is built; never stored or logged."""
        return os.environ.get(self.api_key_env) or None
