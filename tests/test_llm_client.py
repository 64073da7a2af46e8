"""The client over real HTTP to the strict fake endpoint: retries, waits, refusals, structured outputs, cost, the key."""
from __future__ import annotations

import json
import threading
import time

import pytest

from agents.event_types import type_of
from agents.llm.client import LLMClient, MemoryEvents, Pricing, retry_after_seconds
from agents.llm.errors import LLMConfigError, LLMUnavailable
from agents.llm.answers import PlanAnswer
from agents.llm.fake import Answer, FakeEndpoint
from archlab.settings import load_settings
from tests.llm_support import KEY, PLAN, settings

pytestmark = pytest.mark.timeout(60)
HI = [{"role": "user", "content": "hello"}]


def client(fake: FakeEndpoint, **over) -> tuple[LLMClient, MemoryEvents, list[float]]:
    events, waits = MemoryEvents(), []
    return LLMClient(settings(fake.url, **over), KEY, events, seed=0, sleep=waits.append), events, waits


def pairs(events: MemoryEvents) -> list[tuple[str, dict]]:
    """The client's events as (type, fields): it emits payload models (`agents.event_types`)."""
    return [(type_of(model), model.model_dump(by_alias=True)) for model in events.events]


def types(events: MemoryEvents) -> list[str]:
    return [t for t, _ in pairs(events)]


def test_answer_usage_and_cost_are_recorded():
    with FakeEndpoint({"planner-m": [Answer.text("ok", usage=(1000, 500))]}) as fake:
        llm, events, _ = client(fake)
        reply = llm.chat("planner", HI)
    assert reply.text == "ok" and (reply.input_tokens, reply.output_tokens) == (1000, 500)
    assert reply.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert types(events) == ["llm_request", "llm_response"]
    response = pairs(events)[1][1]
    assert response["role"] == "planner" and response["model"] == "planner-m" and response["attempt"] == 1
    assert response["priced"] and response["cost_usd"] == reply.cost_usd
    assert pairs(events)[0][1]["messages"] == HI


def test_missing_usage_is_estimated_and_unknown_models_cost_nothing():
    with FakeEndpoint({"analyst-m": [Answer.text("x" * 400, usage=None)]}) as fake:
        llm, events, _ = client(fake)
        reply = llm.chat("analyst", HI)
    response = pairs(events)[-1][1]
    assert response["usage_estimated"] and reply.output_tokens == 100
    assert reply.cost_usd == 0.0 and response["priced"] is False


def test_429_waits_as_long_as_retry_after_says():
    with FakeEndpoint({"planner-m": [Answer.error(429, headers={"Retry-After": "0.15"}), Answer.text("ok")]}) as fake:
        llm, events, waits = client(fake)
        assert llm.chat("planner", HI).text == "ok"
    assert waits == [0.15]
    error = next(p for t, p in pairs(events) if t == "llm_error")
    assert error["kind"] == "rate_limit" and error["status"] == 429 and error["will_retry"] and error["retry_in"] == 0.15
    assert [p["attempt"] for t, p in pairs(events) if t == "llm_request"] == [1, 2]


def test_retry_after_is_capped_and_parsed_in_every_form():
    with FakeEndpoint({"planner-m": [Answer.error(429, headers={"Retry-After": "3600"}), Answer.text("ok")]}) as fake:
        llm, _, waits = client(fake)
        llm.chat("planner", HI)
    assert waits == [0.2]                                        # max_backoff_seconds
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0   # a date in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None


def test_5xx_backs_off_exponentially_then_answers():
    answers = [Answer.error(500), Answer.error(503), Answer.text("ok")]
    with FakeEndpoint({"coder-m": answers}) as fake:
        llm, events, waits = client(fake)
        assert llm.chat("coder", HI).text == "ok"
    assert waits == [0.01, 0.02]
    assert [p["kind"] for t, p in pairs(events) if t == "llm_error"] == ["server", "server"]


@pytest.mark.parametrize("failure, kind", [
    (Answer(delay=1.5), "timeout"),
    (Answer(drop="before"), "connection"),
    (Answer(drop="midway"), "connection"),
    (Answer(body=b"<html>502 Bad Gateway</html>"), "bad_response"),
    (Answer(body=b'{"choices": [{"message": {"content": "caf\xff\xfe"}}]}'), "bad_response"),
    (Answer(body=b'{"id": "x", "object": "chat.completion"}'), "bad_response"),
])
def test_transport_failures_are_retried(failure, kind):
    with FakeEndpoint({"planner-m": [failure, Answer.text("ok")]}) as fake:
        llm, events, waits = client(fake)
        started = time.monotonic()
        assert llm.chat("planner", HI).text == "ok"
    assert time.monotonic() - started < 5
    assert [p["kind"] for t, p in pairs(events) if t == "llm_error"] == [kind]


def test_endpoint_that_keeps_failing_stops_with_a_clear_error():
    with FakeEndpoint({"planner-m": [Answer.error(500)] * 3}) as fake:
        llm, events, waits = client(fake)
        with pytest.raises(LLMUnavailable, match=r"failed 3 times .*server 500.*archlab resume"):
            llm.chat("planner", HI)
    assert len(waits) == 2 and types(events).count("llm_request") == 3


def test_bad_key_is_a_configuration_error_and_the_key_never_leaks():
    echo = Answer.error(401, f"Incorrect API key provided: {KEY}")
    with FakeEndpoint({"planner-m": [echo]}) as fake:
        llm, events, _ = client(fake)
        with pytest.raises(LLMConfigError, match="OPENAI_API_KEY") as raised:
            llm.chat("planner", HI)
        assert fake.received[0].authorization == f"Bearer {KEY}"
    assert KEY not in str(raised.value) and raised.value.__cause__ is None
    assert KEY not in repr(pairs(events)) and "[api key]" in repr(pairs(events))
    assert KEY not in repr(llm)


def test_unknown_model_names_the_setting():
    with FakeEndpoint({"coder-m": [Answer.error(404, "model not found")]}) as fake:
        llm, _, _ = client(fake)
        with pytest.raises(LLMConfigError, match=r"llm.coder_model"):
            llm.chat("coder", HI)


def test_structured_outputs_are_sent_as_a_strict_json_schema():
    with FakeEndpoint({"planner-m": [Answer.json(PLAN)]}) as fake:
        llm, _, _ = client(fake)
        llm.chat("planner", HI, PlanAnswer)
        sent = fake.received[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    schema = sent["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(PlanAnswer.model_fields)


def sent_formats(fake: FakeEndpoint) -> list[str]:
    return [(r.body.get("response_format") or {}).get("type", "text") for r in fake.received]


def test_auto_steps_down_when_the_endpoint_refuses_json_schema():
    refusal = Answer.error(400, "response_format json_schema is not supported")
    with FakeEndpoint({"planner-m": [refusal, Answer.json(PLAN), Answer.json(PLAN)]}) as fake:
        llm, events, waits = client(fake)
        llm.chat("planner", HI, PlanAnswer)
        llm.chat("planner", HI, PlanAnswer)                       # remembered: json_schema not offered again
        json_object = fake.received[1].body["response_format"]
    assert sent_formats(fake) == ["json_schema", "json_object", "json_object"] and waits == []
    assert json_object["schema"]["required"] == list(PlanAnswer.model_fields)     # llama.cpp's grammar extension
    errors = [p for t, p in pairs(events) if t == "llm_error"]
    assert [e["kind"] for e in errors] == ["json_schema_refused"]
    assert "gets json_object from now on" in errors[0]["message"] and "structured_outputs" in errors[0]["message"]


def test_auto_falls_back_step_by_step_on_any_error_answer():
    """llama-cpp-python answers 500 to json_schema; a server may refuse json_object too: plain text then works."""
    answers = [Answer.error(500, "Input should be 'text' or 'json_object'"), Answer.error(422, "no JSON mode"),
               Answer.json(PLAN), Answer.json(PLAN)]
    with FakeEndpoint({"planner-m": answers}) as fake:
        llm, events, waits = client(fake)
        assert json.loads(llm.chat("planner", HI, PlanAnswer).text) == PLAN
        llm.chat("planner", HI, PlanAnswer)
    assert sent_formats(fake) == ["json_schema", "json_object", "text", "text"]
    assert waits == [] and llm.format_for("planner-m") == "text" and llm.format_for("coder-m") == "json_schema"
    assert [p["kind"] for t, p in pairs(events) if t == "llm_error"] == ["json_schema_refused", "json_object_refused"]


def test_a_transient_error_does_not_drop_structured_outputs():
    with FakeEndpoint({"planner-m": [Answer.error(429, headers={"Retry-After": "0"}), Answer.json(PLAN)]}) as fake:
        llm, _, _ = client(fake)
        llm.chat("planner", HI, PlanAnswer)
    assert sent_formats(fake) == ["json_schema", "json_schema"]


def test_the_fallback_is_taken_up_again_from_the_log_after_a_resume(tmp_path):
    """A fresh client (a resumed run) reads the fallback from the run's event log: no second refused request."""
    from agents.events import EventLog
    log = EventLog(tmp_path / "events.jsonl")
    with FakeEndpoint({"planner-m": [Answer.error(500, "json_schema?"), Answer.json(PLAN)]}) as fake:
        first = LLMClient(settings(fake.url), KEY, log, seed=0, sleep=lambda s: None)
        first.chat("planner", HI, PlanAnswer)
    log.close()
    resumed_log = EventLog(tmp_path / "events.jsonl")
    with FakeEndpoint({"planner-m": [Answer.json(PLAN)]}) as fake:
        resumed = LLMClient(settings(fake.url), KEY, resumed_log, seed=0, sleep=lambda s: None)
        resumed.restore_formats(resumed_log.history)
        resumed.chat("planner", HI, PlanAnswer)
    assert sent_formats(fake) == ["json_object"]


def test_on_mode_that_keeps_failing_names_the_setting():
    with FakeEndpoint({"planner-m": [Answer.error(500, "unsupported response_format")] * 3}) as fake:
        llm, _, _ = client(fake, structured_outputs="on")
        with pytest.raises(LLMUnavailable, match=r"llm.structured_outputs = 'on'.*'auto' or 'off'"):
            llm.chat("planner", HI, PlanAnswer)
    assert sent_formats(fake) == ["json_schema"] * 3


def test_on_means_on_and_off_means_off():
    refusal = Answer.error(400, "response_format is not supported")
    with FakeEndpoint({"planner-m": [refusal]}) as fake:
        llm, _, _ = client(fake, structured_outputs="on")
        with pytest.raises(LLMConfigError, match="structured_outputs"):
            llm.chat("planner", HI, PlanAnswer)
    with FakeEndpoint({"planner-m": [Answer.json(PLAN)]}) as fake:
        llm, _, _ = client(fake, structured_outputs="off", temperature=None, max_output_tokens=300)
        llm.chat("planner", HI, PlanAnswer)
        body = fake.received[0].body
    assert "response_format" not in body and "temperature" not in body and body["max_tokens"] == 300


def test_concurrency_is_limited():
    answers = [Answer.text("ok", delay=0.15) for _ in range(6)]
    with FakeEndpoint({"planner-m": answers}) as fake:
        llm, _, _ = client(fake, max_concurrency=2, timeout_seconds=5)
        active, peak, lock = [0], [0], threading.Lock()
        original = llm.connection("planner-m").chat.completions.create

        def counting(**params):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                return original(**params)
            finally:
                with lock:
                    active[0] -= 1
        llm.connection("planner-m").chat.completions.create = counting
        threads = [threading.Thread(target=llm.chat, args=("planner", HI)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert peak[0] == 2


def test_the_fake_is_strict():
    fake = FakeEndpoint({"planner-m": [Answer.text("a"), Answer.text("b")]}).start()
    llm, _, _ = client(fake)
    llm.chat("planner", HI)
    with pytest.raises(LLMConfigError):
        llm.chat("coder", HI)                                  # nothing recorded for the coder
    fake.stop()
    with pytest.raises(AssertionError, match=r"unrecorded request.*coder-m.*planner-m: 1 answer\(s\) never requested"):
        fake.verify()


def test_prices_match_model_prefixes():
    pricing = Pricing(load_settings(None).llm.prices)
    cost, priced = pricing.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000)
    assert priced and cost == pytest.approx(0.15 + 0.60)
    assert pricing.cost("llama3.1:8b", 10, 10) == (0.0, False)


def test_settings_read_the_environment_once(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ARCHLAB_LLM__CODER_MODEL", "qwen2.5-coder")
    monkeypatch.setenv("MY_KEY", "abc")
    s = load_settings(None, llm__backend="openai", llm__api_key_env="MY_KEY")
    assert s.llm.base_url == "http://127.0.0.1:9/v1" and s.llm.coder_model == "qwen2.5-coder"
    assert s.llm.api_key() == "abc" and "abc" not in s.model_dump_json()
    monkeypatch.setenv("ARCHLAB_LLM__BASE_URL", "http://127.0.0.1:8/v1")
    assert load_settings(None).llm.base_url == "http://127.0.0.1:8/v1"     # ours wins over the standard one


def test_none_in_toml_or_env_leaves_a_value_to_the_server(tmp_path, monkeypatch):
    config = tmp_path / "lab.toml"
    config.write_text('[llm]\nbackend = "openai"\ntemperature = "none"\n[llm.prices."llama3.1:8b"]\n'
                      'input_per_mtok = 0\noutput_per_mtok = 0\n')
    s = load_settings(config)
    assert s.llm.temperature is None and list(s.llm.prices) == ["llama3.1:8b"]
    monkeypatch.setenv("ARCHLAB_LLM__MAX_OUTPUT_TOKENS", "none")
    assert load_settings(None).llm.max_output_tokens is None


def completion(message=None, choices=None, usage=..., finish="stop", **top) -> bytes:
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "served-name",
            "choices": choices if choices is not None else [{"index": 0, "message": message, "finish_reason": finish}],
            **top}
    if usage is ...:
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


TOOL_CALL = {"id": "t1", "type": "function", "function": {"name": "PlanAnswer", "arguments": json.dumps(PLAN)}}
# (id, body, text, refused, note must contain, tokens (in, out) or None for estimated)
SHAPES = [
    ("content-parts", completion({"role": "assistant", "content": [{"type": "text", "text": "hello "},
                                                                    {"type": "text", "text": "world"}]}),
     "hello world", False, "", (11, 7)),
    ("output-text-parts-and-an-image", completion({"role": "assistant", "content": [
        {"type": "output_text", "text": "ok"}, {"type": "image_url", "image_url": {"url": "x"}}]}),
     "ok", False, "image_url", (11, 7)),
    ("one-part-as-an-object", completion({"role": "assistant", "content": {"type": "text", "text": "solo"}}),
     "solo", False, "", (11, 7)),
    ("parts-with-null-text", completion({"role": "assistant", "content": [{"type": "text", "text": None}]}),
     "", False, "", (11, 7)),
    ("number-content", completion({"role": "assistant", "content": 42}), "42", False, "", (11, 7)),
    ("null-content-with-tool-call", completion({"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                                               finish="tool_calls"),
     json.dumps(PLAN), False, "call to the tool 'PlanAnswer'", (11, 7)),
    ("old-function-call", completion({"role": "assistant", "content": None,
                                      "function_call": {"name": "f", "arguments": "{\"a\": 1}"}}),
     "{\"a\": 1}", False, "call to the tool 'f'", (11, 7)),
    ("reasoning-field-and-empty-content", completion({"role": "assistant", "content": "",
                                                      "reasoning_content": "Let me think about it..."},
                                                     finish="length"),
     "", False, "only reasoning", (11, 7)),
    ("reasoning-parts", completion({"role": "assistant", "content": [{"type": "reasoning", "text": "hmm"},
                                                                     {"type": "text", "text": "answer"}]}),
     "answer", False, "", (11, 7)),
    ("think-block-in-content", completion({"role": "assistant", "content": "<think>draft {\"x\": 1}</think>\nfinal"}),
     "\nfinal", False, "", (11, 7)),
    ("unclosed-think-block", completion({"role": "assistant", "content": "<think>still thinking"}, finish="length"),
     "", False, "only reasoning", (11, 7)),
    ("refusal-field", completion({"role": "assistant", "content": None, "refusal": "I can't help with that."}),
     "I can't help with that.", True, "", (11, 7)),
    ("refusal-part", completion({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}),
     "No.", True, "", (11, 7)),
    ("no-choices", completion(choices=[]), "", False, "no choices", (11, 7)),
    ("choice-without-message", completion(None), "", False, "without a message", (11, 7)),
    ("message-as-a-string", completion("bare text"), "bare text", False, "", (11, 7)),
    ("no-usage", completion({"role": "assistant", "content": "x" * 40}, usage=None), "x" * 40, False, "", None),
    ("usage-with-strings-and-nulls", completion({"role": "assistant", "content": "ok"},
                                                usage={"prompt_tokens": "9", "completion_tokens": None}),
     "ok", False, "", (9, 0)),
    ("usage-not-an-object", completion({"role": "assistant", "content": "ok"}, usage=3), "ok", False, "", None),
    ("null-finish-reason-and-model", completion({"role": "assistant", "content": "ok"}, finish=None, model=None),
     "ok", False, "", (11, 7)),
    ("audio-transcript", completion({"role": "assistant", "content": None,
                                     "audio": {"id": "a", "data": "", "expires_at": 0, "transcript": "spoken"}}),
     "spoken", False, "", (11, 7)),
]


@pytest.mark.parametrize("body, text, refused, note, tokens", [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_every_answer_shape_becomes_a_reply(body, text, refused, note, tokens):
    with FakeEndpoint({"planner-m": [Answer(body=body)]}) as fake:
        llm, events, _ = client(fake)
        reply = llm.chat("planner", HI)
    assert isinstance(reply.text, str) and reply.text == text and reply.refused is refused
    assert note in reply.note if note else reply.note == ""
    response = pairs(events)[-1][1]
    assert pairs(events)[-1][0] == "llm_response" and response["text"] == text
    if tokens is None:
        assert response["usage_estimated"] and reply.input_tokens > 0
    else:
        assert (reply.input_tokens, reply.output_tokens) == tokens


def test_bodies_that_are_no_chat_completion_are_resent():
    bad = [Answer(body=b"[]"), Answer(body=b'{"error": {"message": "overloaded"}}'), Answer(body=b'{"choices": {"0": 1}}')]
    with FakeEndpoint({"planner-m": [*bad, Answer.text("ok")]}) as fake:
        llm, events, _ = client(fake, max_retries=3)
        assert llm.chat("planner", HI).text == "ok"
    assert [p["kind"] for t, p in pairs(events) if t == "llm_error"] == ["bad_response"] * 3
