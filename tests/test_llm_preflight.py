"""`OpenAIEngine.preflight()`: a wrong key, model or URL is found with one cheap request, before any job."""
from __future__ import annotations

import socket
import time

import pytest

from agents.llm.engine import OpenAIEngine
from agents.llm.errors import LLMConfigError, LLMUnavailable
from agents.llm.fake import Answer, FakeEndpoint
from tests.llm_support import KEY, settings
from tests.runs_support import archlab

pytestmark = pytest.mark.timeout(60)


def engine(url: str, **over) -> OpenAIEngine:
    return OpenAIEngine(settings(url, **over), seed=0, api_key=KEY, sleep=lambda s: None)


def test_listed_models_pass_without_spending_a_token():
    with FakeEndpoint(models=["planner-m", "coder-m", "analyst-m", "other"]) as fake:
        engine(fake.url).preflight()
        assert fake.listed == 1 and fake.received == []


def test_a_refused_key_names_the_key_variable():
    with FakeEndpoint(models=Answer.error(401, f"Incorrect API key provided: {KEY}")) as fake:
        with pytest.raises(LLMConfigError, match=r"llm.api_key_env \(OPENAI_API_KEY\)") as raised:
            engine(fake.url).preflight()
    assert KEY not in str(raised.value) and raised.value.status == 401


def test_an_unknown_model_names_its_setting_and_what_the_server_has():
    with FakeEndpoint({"analyst-m": [Answer.error(404, "model 'analyst-m' not found")]},
                      models=["planner-m", "coder-m"]) as fake:
        with pytest.raises(LLMConfigError, match=r"'analyst-m' named by llm.analyst_model; it lists 'planner-m'"):
            engine(fake.url).preflight()
        assert fake.received[0].body["max_tokens"] == 1


def test_one_model_for_every_role_names_every_setting():
    with FakeEndpoint({"m": [Answer.error(404, "no such model")]}, models=[]) as fake:
        with pytest.raises(LLMConfigError, match=r"llm.planner_model, llm.coder_model, llm.analyst_model"):
            engine(fake.url, planner_model="m", coder_model="m", analyst_model="m").preflight()
        assert len(fake.received) == 1                     # one probe per distinct model


def test_a_server_that_serves_names_it_does_not_list_passes_with_a_1_token_probe():
    """llama.cpp lists the model file and answers to any name; a server without /models is probed the same way."""
    answers = {m: [Answer.text("O", usage=(5, 1))] for m in ("planner-m", "coder-m", "analyst-m")}
    with FakeEndpoint(answers, models=["/models/smollm2.gguf"]) as fake:
        engine(fake.url).preflight()
        assert [r.body["max_tokens"] for r in fake.received] == [1, 1, 1]
    with FakeEndpoint({"planner-m": [Answer.text("O")]}, models=Answer.error(404, "no /models here")) as fake:
        engine(fake.url, coder_model="planner-m", analyst_model="planner-m").preflight()


def test_a_probe_refused_for_its_own_options_is_left_to_the_real_calls():
    with FakeEndpoint({"planner-m": [Answer.error(400, "max_tokens is not supported with this model")]},
                      models=["coder-m", "analyst-m"]) as fake:
        engine(fake.url).preflight()


def test_an_unreachable_endpoint_names_base_url_and_fails_fast():
    with socket.socket() as sock:                       # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=rf"llm.base_url = http://127.0.0.1:{port}/v1 cannot be reached"):
        engine(f"http://127.0.0.1:{port}/v1").preflight()
    assert time.monotonic() - started < 10


def test_the_cli_stops_a_run_with_a_wrong_model_before_it_starts(tmp_path):
    with FakeEndpoint({"nonexistent-coder": [Answer.error(404, "model not found")]},
                      models=["planner-m", "analyst-m"]) as fake:
        env = {"ARCHLAB_LLM__BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "ARCHLAB_LLM__PLANNER_MODEL": "planner-m",
               "ARCHLAB_LLM__CODER_MODEL": "nonexistent-coder", "ARCHLAB_LLM__ANALYST_MODEL": "analyst-m"}
        proc = archlab("run", "--rounds", "1", "--llm", "openai", "--runs-dir", str(tmp_path), extra_env=env,
                       timeout=120)
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'nonexistent-coder' named by llm.coder_model" in message and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())                   # no run was created, no job ran
