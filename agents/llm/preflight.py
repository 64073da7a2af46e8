"""Check the endpoint, the key and every model once, before the first job, so a typo costs seconds, not a round.

`check_endpoint(client, llm)` asks each endpoint `GET /models` first (no tokens). A model the list does
not name gets a 1-token chat, because some servers serve names they do not list (llama.cpp
serves any name; Ollama resolves tags). It raises, with the setting to fix named:

- `LLMConfigError` for a refused key (401/403: `llm.api_key_env`) or a model the server does
  not have (404: `llm.planner_model` / `llm.coder_model` / `llm.analyst_model`, with what the
  server lists);
- `LLMUnavailable` for an endpoint that cannot be reached (`llm.base_url`), or that keeps
  failing the probe.

Not judged here: a 400/422 to the probe (a server that refuses `max_tokens = 1`, say) is
left to the real calls. The probes are ordinary calls (`llm_request`/`llm_response` events,
purpose `preflight`); the engine keeps them in memory until it is attached to a run's log.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import openai

from agents.llm.client import ROLES, LLMClient
from agents.llm.errors import LLMConfigError, LLMUnavailable

if TYPE_CHECKING:
    from agents.llm.settings import LLMSettings

PROBE = [{"role": "user", "content": "Reply with OK."}]


def check_endpoint(client: LLMClient, llm: "LLMSettings") -> None:
    """Every model any role may use, at the endpoint that serves it (`llm.base_url`, or its own in `llm.endpoints`)."""
    by_endpoint: dict[int, list[str]] = {}
    for model in client.models():
        by_endpoint.setdefault(id(client.connection(model)), []).append(model)
    for models in by_endpoint.values():
        _check(client, llm, client.url_for(models[0]), models)


def _check(client: LLMClient, llm: "LLMSettings", url: str, models: list[str]) -> None:
    listed: list[str] | None = None
    try:
        listed = client.list_models(models[0])
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise LLMConfigError(key_message(client, models[0], exc.status_code, client._describe(exc)),
                             status=exc.status_code) from None
    except openai.APIStatusError:
        listed = None                           # no model list here (404/405/5xx): the probe decides
    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
        raise LLMUnavailable(unreachable_message(client, models[0], client._describe(exc))) from None
    except ValueError:                          # a body that is not a model list
        listed = None
    for model in models:
        if listed is not None and model in listed:
            continue
        role = next(r for r in ROLES if model in llm.models(r))
        try:
            client.chat(role, PROBE, purpose="preflight", max_tokens=1, model=model)
        except LLMConfigError as exc:
            if exc.status in (401, 403):
                raise LLMConfigError(key_message(client, model, exc.status, str(exc)), status=exc.status) from None
            if exc.status == 404:
                known = f"; it lists {', '.join(repr(m) for m in listed[:12])}" if listed else ""
                raise LLMConfigError(f"the endpoint {url} does not serve the model {model!r} named by "
                                     f"{client.settings_for(model)}{known}; set it to a model the server has "
                                     f"(or fix {client.url_setting(model)})", status=404) from None
            continue                            # a 400/422 to the probe itself: the real calls will tell
        except LLMUnavailable as exc:
            if exc.status is None:              # never answered: connection refused, timeouts
                raise LLMUnavailable(unreachable_message(client, model, str(exc))) from None
            raise


def key_message(client: LLMClient, model: str, status: int | None, detail: str) -> str:
    return (f"the endpoint {client.url_for(model)} refused the API key ({status}: {detail[:200]}); put a valid key "
            f"in the variable named by {client.key_setting(model)}")


def unreachable_message(client: LLMClient, model: str, detail: str) -> str:
    setting = client.url_setting(model)
    return (f"the endpoint at {setting} = {client.url_for(model)} cannot be reached ({detail[:300]}); start the "
            f"server or fix {setting} (an OpenAI-compatible URL usually ends in /v1)")
