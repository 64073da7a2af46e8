"""One chat call to an OpenAI-compatible endpoint: retries, structured-output fallback, usage and cost, events.

Built on the official `openai` client with its own retries switched off (`max_retries=0`):
the retry loop lives here so that every attempt is an event, the waits are settings, and a
server's Retry-After is honoured up to `max_backoff_seconds`.

What it guarantees:
- Re-sent, with backoff: 429 (Retry-After / Retry-After-Ms honoured), 408, 409, 5xx, timeouts,
  refused or dropped connections, and bodies that are not a chat completion (bad JSON,
  bad UTF-8, no `choices` list). After `max_retries` re-sends: `LLMUnavailable`.
- Not re-sent: 401/403 (key), 404 (model or URL), other 4xx: `LLMConfigError`.
- Structured outputs (`llm.structured_outputs`): `on` always sends `json_schema`; `off` never
  sends a `response_format`; `auto` steps down `json_schema` -> `json_object` (with the schema
  attached, which llama.cpp servers turn into a grammar) -> plain text whenever a request
  carrying `response_format` gets an error answer (400, 422, 500 and any other status but
  401/403/404, 408/409/429 and 502/503/504, which are about the key, the model or the
  server's availability: llama-cpp-python answers 500 to `json_schema`, vLLM 400), and sends
  it again at once. The step that works is remembered per model and logged as an `llm_error`
  of kind `json_schema_refused` or `json_object_refused` (the step given up; the message says
  what comes next), from which `restore_formats` takes it up again when a run is resumed.
- Every answer of any shape becomes a `Reply` (see `agents.llm.completion`), never an
  exception: content parts, tool calls, reasoning-only answers, refusals, no choices.
- At most `max_concurrency` requests in flight (a `BoundedSemaphore`), whoever calls; the
  client is shared by threads and keeps no per-call state on itself.
- Events: `llm_request` and `llm_response` (tokens, `cost_usd`, `priced`) or `llm_error`
  (kind, status, whether it will be retried, the wait) per attempt, with role, model and
  attempt; `input_tokens` per `llm_response` is the prompt size per role. Texts are kept up to
  `LOGGED_CHARS`. The API key never appears: it is not part of any payload, and error texts
  are scrubbed of it before they are logged or raised.

- Models: `chat(role, ..., model=...)` asks the model chosen for the call (default: the role's
  first); a model listed in `llm.endpoints` is sent to its own server with its own key, every
  other one to `llm.base_url`. `candidate_id` names the candidate a call serves, in its events.

What it does not do: judge the answer. An empty, refused or malformed answer is returned as
a `Reply`; the engine decides whether to send it back.
"""
from __future__ import annotations

import email.utils
import itertools
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

import openai
from pydantic import BaseModel

from agents.event_types import LLMError, LLMRequest, LLMResponse, Payload
from agents.llm.completion import read_completion
from agents.llm.errors import LLMConfigError, LLMUnavailable

if TYPE_CHECKING:
    from agents.llm.settings import LLMSettings

LOGGED_CHARS = 100_000          # characters of one prompt or answer kept in an event
CHARS_PER_TOKEN = 4             # for estimating usage when the server reports none
RETRY_STATUSES = {408, 409, 429}
# error answers that never mean "response_format refused": key, model/URL, timeouts, rate limits, and the
# gateway / unavailable statuses a proxy or an overloaded server gives whatever the request held
NOT_ABOUT_FORMAT = {401, 403, 404, 408, 409, 429, 502, 503, 504}
FORMATS = ("json_schema", "json_object", "text")  # the structured-output steps, strictest first
ROLES = ("planner", "coder", "analyst")
# schema keywords some strict structured-output implementations refuse; pydantic still checks them on arrival
UNSUPPORTED_KEYWORDS = ("default", "title", "minLength", "maxLength", "minItems", "maxItems")


class EventSink(Protocol):
    def emit(self, data: Payload) -> Any: ...


class MemoryEvents:
    """Events kept in memory until the engine is attached to a run's log."""

    def __init__(self) -> None:
        self.events: list[Payload] = []

    def emit(self, data: Payload) -> None:
        self.events.append(data)


@dataclass
class Reply:
    text: str                   # the answer (the refusal text when the model refused); always a str
    model: str
    finish_reason: str
    refused: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float
    call_id: str
    note: str = ""              # what was unusual about the answer's shape, for the model ("" when nothing)
    reasoning: str = ""         # reasoning the server returned apart from the answer
    candidate_id: str = ""      # the candidate the call served


def clean_text(text: str) -> str:
    """Valid UTF-8 without NULs: lone surrogates and undecodable bytes become '?'."""
    return str(text).encode("utf-8", "replace").decode("utf-8", "replace").replace("\x00", "")


def clip(text: str, limit: int = LOGGED_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}\n[... {len(text) - limit} characters not logged]"


class Pricing:
    """USD per call from a table of model name (or name prefix) -> price per million tokens."""

    def __init__(self, prices: dict[str, Any]):
        self.prices = {name: (float(p.input_per_mtok), float(p.output_per_mtok)) for name, p in prices.items()}

    def lookup(self, model: str) -> tuple[float, float] | None:
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if model.startswith(name)]   # gpt-4o-mini-2024-07-18 -> gpt-4o-mini
        return self.prices[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> tuple[float, bool]:
        price = self.lookup(model)
        if price is None:
            return 0.0, False
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6, True


def retry_after_seconds(headers: Any) -> float | None:
    """The server's requested wait, from Retry-After-Ms, Retry-After (seconds) or Retry-After (HTTP date)."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = float(email.utils.mktime_tz(parsed) - time.time())
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the strict form structured outputs require: every field required, no extras."""
    schema = model.model_json_schema()

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for keyword in UNSUPPORTED_KEYWORDS:
                if not isinstance(node.get(keyword), dict):    # a keyword, not a property of that name
                    node.pop(keyword, None)
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


def response_format(kind: str, schema: type[BaseModel]) -> dict[str, Any] | None:
    """The `response_format` of one structured-output step; None for plain text."""
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": strict_schema(schema),
                                                        "strict": True}}
    if kind == "json_object":       # `schema` is llama.cpp's extension (a grammar); other servers ignore it
        return {"type": "json_object", "schema": strict_schema(schema)}
    return None


class LLMClient:
    """`api_key` is `llm.base_url`'s key; a model with its own endpoint (`llm.endpoints`) is sent there, with the key
    in the variable that endpoint names (none needed on a local server)."""

    def __init__(self, llm: "LLMSettings", api_key: str, events: EventSink, seed: int | None = None,
                 http_client: Any = None, sleep: Callable[[float], None] = time.sleep):
        self.llm = llm
        self.base_url = llm.base_url or "https://api.openai.com/v1"
        self.events = events
        self.seed = seed
        self.sleep = sleep
        self.pricing = Pricing(llm.prices)
        # one connection per endpoint: (its URL, its key); a local server needs no key ("none")
        self._served = {model: self._endpoint(model, api_key) for model in llm.endpoints}   # keys read once, here
        self._default = (self.base_url, api_key)
        keys = {self._default, *self._served.values()}
        self._secrets = sorted({key for _, key in keys if len(key) >= 8}, key=len, reverse=True)   # not "none"
        self._openai = {(url, key): openai.OpenAI(base_url=url, api_key=key, timeout=llm.timeout_seconds,
                                                  max_retries=0, http_client=http_client) for url, key in keys}
        self._slots = threading.BoundedSemaphore(llm.max_concurrency)
        self._lock = threading.Lock()               # guards the event sink and `_formats`
        self._ids = itertools.count(1)
        self._formats: dict[str, int] = {}          # model -> index in FORMATS of the step that its endpoint takes

    def __repr__(self) -> str:                       # never the key
        return f"LLMClient(base_url={self.base_url!r})"

    def _endpoint(self, model: str, default_key: str) -> tuple[str, str]:
        """(URL, key) of the endpoint serving `model`: its own (`llm.endpoints`, its key from the variable it names,
        else `llm.base_url`'s key), else `llm.base_url`'s."""
        endpoint = self.llm.endpoints.get(model)
        if endpoint is None:
            return self.base_url, default_key
        if endpoint.api_key_env is None:
            return endpoint.base_url, default_key
        return endpoint.base_url, os.environ.get(endpoint.api_key_env) or "none"

    def connection(self, model: str) -> openai.OpenAI:
        """The client for the endpoint serving `model`."""
        return self._openai[self._served.get(model, self._default)]

    def close(self) -> None:
        for client in self._openai.values():
            client.close()

    def model_for(self, role: str) -> str:
        """The role's default model (the first it lists)."""
        return self.llm.models(role)[0]

    def models(self) -> list[str]:
        """Every model some role may use, each once."""
        return list(dict.fromkeys(m for role in ROLES for m in self.llm.models(role)))

    def url_for(self, model: str) -> str:
        """The endpoint serving `model`: its own (`llm.endpoints`), else `llm.base_url`."""
        return self._served.get(model, self._default)[0]

    def url_setting(self, model: str) -> str:
        """The setting that says where `model` is served."""
        return f'llm.endpoints."{model}".base_url' if model in self.llm.endpoints else "llm.base_url"

    def key_setting(self, model: str) -> str:
        """The setting naming the variable that holds `model`'s key, and that variable."""
        endpoint = self.llm.endpoints.get(model)
        if endpoint is not None and endpoint.api_key_env:
            return f'llm.endpoints."{model}".api_key_env ({endpoint.api_key_env})'
        return f"llm.api_key_env ({self.llm.api_key_env})"

    def settings_for(self, model: str) -> str:
        """The settings that name `model`: 'llm.planner_model, llm.coder_model'."""
        return ", ".join(f"llm.{role}_model" for role in ROLES if model in self.llm.models(role))

    def scrub(self, text: str) -> str:
        text = clean_text(text)
        for secret in self._secrets:
            text = text.replace(secret, "[api key]")
        return text

    def emit(self, data: Payload) -> None:
        with self._lock:
            self.events.emit(data)

    # --- structured outputs -------------------------------------------------------------------
    def format_for(self, model: str) -> str:
        """The structured-output step this model's requests carry now: json_schema, json_object or text."""
        if self.llm.structured_outputs == "off":
            return "text"
        if self.llm.structured_outputs == "on":
            return "json_schema"
        with self._lock:
            return FORMATS[self._formats.get(model, 0)]

    def restore_formats(self, events: Iterable[Any]) -> None:
        """Take up the fallbacks an earlier session of this run logged (`llm_error` kinds `<step>_refused`)."""
        for event in events:
            data = event.data
            if not isinstance(data, LLMError):
                continue
            refused = data.kind.removesuffix("_refused")
            if refused in FORMATS[:-1]:
                with self._lock:
                    self._formats[data.model] = max(self._formats.get(data.model, 0), FORMATS.index(refused) + 1)

    def _step_down(self, model: str, used: str) -> str:
        """The next step after `used` for this model; concurrent failures of the same step move it once."""
        with self._lock:
            level = max(self._formats.get(model, 0), FORMATS.index(used) + 1)
            self._formats[model] = min(level, len(FORMATS) - 1)
            return FORMATS[self._formats[model]]

    # --- the call ---------------------------------------------------------------------------
    def chat(self, role: str, messages: list[dict[str, str]], schema: type[BaseModel] | None = None,
             purpose: str = "", max_tokens: int | None = None, model: str | None = None,
             candidate_id: str = "") -> Reply:
        """One answer from `model` (default: the role's first), after as many re-sends as the settings allow.
        `candidate_id` names the candidate the call serves, in its events: what a model cost is counted per candidate."""
        model = model or self.model_for(role)
        url = self.url_for(model)
        call_id = f"{role}-{next(self._ids)}"
        retries = 0
        attempt = 0
        while True:
            attempt += 1
            sent = self.format_for(model) if schema is not None else "text"
            params = self._params(model, messages, response_format(sent, schema) if schema else None, max_tokens)
            self.emit(LLMRequest(role=role, model=model, candidate_id=candidate_id, call_id=call_id, attempt=attempt,
                                 purpose=purpose,
                                 structured=sent != "text", messages=[{"role": m["role"], "content": clip(self.scrub(m["content"]))} for m in messages]))
            started = time.monotonic()
            try:
                with self._slots:
                    response = self.connection(model).chat.completions.create(**params)
                reply = self._reply(response, messages, role, model, call_id, attempt, time.monotonic() - started,
                                    candidate_id)
                if reply is not None:
                    return reply
                kind, status, message, wait_hint = "bad_response", None, "the body is not a chat completion", None
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = self._describe(exc)
                if sent != "text" and self.llm.structured_outputs == "auto" and status not in NOT_ABOUT_FORMAT:
                    to = self._step_down(model, sent)
                    self._error(role, model, candidate_id, call_id, attempt, f"{sent}_refused", status,
                                f"response_format {sent} refused ({message}); {model!r} gets {to} from now on "
                                f"(llm.structured_outputs = 'auto')", True, 0.0)
                    continue
                if status not in RETRY_STATUSES and status < 500:
                    self._error(role, model, candidate_id, call_id, attempt, "refused", status, message, False, None)
                    raise LLMConfigError(self._refusal_message(role, model, status, message, sent, url),
                                         status=status) from None
                kind = "rate_limit" if status == 429 else "server"
                wait_hint = retry_after_seconds(exc.response.headers)
            except openai.APITimeoutError:
                kind, status, message, wait_hint = "timeout", None, f"no answer within {self.llm.timeout_seconds:g} s", None
            except openai.APIConnectionError as exc:
                kind, status, message, wait_hint = "connection", None, self._describe(exc), None
            except ValueError as exc:                  # a body that is not JSON, or not UTF-8
                kind, status, message, wait_hint = "bad_response", None, f"{type(exc).__name__}: {exc}", None
            will_retry = retries < self.llm.max_retries
            wait = self._wait(retries, wait_hint) if will_retry else None
            self._error(role, model, candidate_id, call_id, attempt, kind, status, message, will_retry, wait)
            if not will_retry:
                raise LLMUnavailable(
                    f"the {role} model {model!r} at {url} failed {attempt} times (last: {kind}"
                    f"{f' {status}' if status else ''}: {self.scrub(message)[:300]}); check that the server is up "
                    f"and reachable (llm.base_url), or raise llm.max_retries / llm.timeout_seconds"
                    f"{self._format_hint(sent)}, then `archlab resume RUN`", status=status)
            retries += 1
            self.sleep(wait)

    def list_models(self, model: str | None = None) -> list[str]:
        """The model ids the endpoint serving `model` (default: `llm.base_url`) lists (`GET /models`); the openai
        client's errors pass through."""
        with self._slots:
            page = (self.connection(model) if model else self._openai[self._default]).models.list()
        return [str(getattr(m, "id", "")) for m in getattr(page, "data", None) or [] if getattr(m, "id", None)]

    def _format_hint(self, sent: str) -> str:
        if sent == "text":
            return ""
        if self.llm.structured_outputs == "on":
            return (f"; the request carried response_format {sent} because llm.structured_outputs = 'on': "
                    f"if the server does not support it, set llm.structured_outputs = 'auto' or 'off'")
        return f"; it carried response_format {sent} (llm.structured_outputs = 'off' sends none)"

    def _params(self, model: str, messages: list[dict[str, str]], format: dict[str, Any] | None,
                max_tokens: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model, "messages": messages}
        if self.llm.temperature is not None:
            params["temperature"] = self.llm.temperature
        if max_tokens is not None or self.llm.max_output_tokens is not None:
            params["max_tokens"] = max_tokens if max_tokens is not None else self.llm.max_output_tokens
        if self.seed is not None:
            params["seed"] = self.seed
        if format is not None:
            params["response_format"] = format
        return params

    def _reply(self, response: Any, messages: list[dict[str, str]], role: str, model: str, call_id: str, attempt: int,
               seconds: float, candidate_id: str = "") -> Reply | None:
        answered = read_completion(response)
        if answered is None:
            return None
        refusal = self.scrub(answered.refusal)
        text = self.scrub(answered.text) or refusal
        estimated = answered.input_tokens is None
        input_tokens = (sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN if estimated
                        else answered.input_tokens)
        output_tokens = (answered.output_tokens if answered.output_tokens is not None
                         else len(text + answered.reasoning) // CHARS_PER_TOKEN)
        cost, priced = self.pricing.cost(model, input_tokens, output_tokens)
        note = self.scrub(answered.note)
        self.emit(LLMResponse(role=role, model=model, candidate_id=candidate_id, served_by=self.scrub(answered.served_by), call_id=call_id,
                              attempt=attempt, text=clip(text), finish_reason=answered.finish_reason, refused=bool(refusal),
                              input_tokens=input_tokens, output_tokens=output_tokens, usage_estimated=estimated,
                              cost_usd=cost, priced=priced, seconds=round(seconds, 3)))
        return Reply(text=text, model=model, finish_reason=answered.finish_reason, refused=bool(refusal),
                     input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost, call_id=call_id,
                     note=note, reasoning=self.scrub(answered.reasoning), candidate_id=candidate_id)

    def _wait(self, retries: int, hint: float | None) -> float:
        if hint is not None:
            return min(hint, self.llm.max_backoff_seconds)
        return min(self.llm.backoff_seconds * (2 ** retries), self.llm.max_backoff_seconds)

    def _error(self, role: str, model: str, candidate_id: str, call_id: str, attempt: int, kind: str,
               status: int | None, message: str, will_retry: bool, wait: float | None) -> None:
        self.emit(LLMError(role=role, model=model, candidate_id=candidate_id, call_id=call_id, attempt=attempt, kind=kind, status=status,
                           message=clip(self.scrub(message), 2000), will_retry=will_retry, retry_in=wait))

    def _describe(self, exc: openai.APIError) -> str:
        body = exc.body
        if isinstance(body, dict):
            inner = body.get("error", body)
            detail = inner.get("message") if isinstance(inner, dict) else None
            if detail:
                return self.scrub(str(detail))
        cause = exc.__cause__
        return self.scrub(f"{exc.message}" + (f" ({type(cause).__name__}: {cause})" if cause else ""))

    def _refusal_message(self, role: str, model: str, status: int, message: str, sent: str, url: str) -> str:
        where = f"the endpoint {url} answered {status} to the {role} model {model!r}: {message[:300]}"
        if status in (401, 403):
            return f"{where}; check the key in the variable named by {self.key_setting(model)}"
        if status == 404:
            return (f"{where}; check {self.settings_for(model) or f'llm.{role}_model'} and {self.url_setting(model)} "
                    f"(it usually ends in /v1)")
        if sent != "text":
            return (f"{where}; the endpoint may not support structured outputs (response_format {sent}): "
                    f"set llm.structured_outputs = 'auto' or 'off'")
        return f"{where}; check the llm settings (llm.max_output_tokens, llm.temperature, the model names)"
