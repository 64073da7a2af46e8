from agents.control import Budgets, RunControl, StopRequested, committed, gpu_seconds, llm_cost, wall_seconds
from agents.event_types import JobResult, JobStarted, LLMRequest, LLMResponse, RunResumed, RunStarted
from agents.events import Event
from tests.runs_support import archlab, events, only_run


def session(seq, t, kind=RunStarted):
    return Event.of(kind(run_id="r", task="mqar", rounds=1, engine="offline", sandbox="process",
                         spec={"name": "mqar", "family": "sequence"}), seq, t)


def result(seq, t, wall_seconds, gpus, job="c001-short-0", fidelity="short"):
    return Event.of(JobResult(job_id=job, candidate_id=job.split("-")[0], fidelity=fidelity, status="ok", metrics={},
                              message="", timings={"wall_seconds": wall_seconds}, gpus=gpus), seq, t)


def started(seq, t, job, gpus, fidelity="full"):
    return Event.of(JobStarted(job_id=job, candidate_id=job.split("-")[0], fidelity=fidelity, sandbox="process",
                               source_hash="h", seed=0, gpus=gpus), seq, t)


def request(seq, t, call_id, role="planner"):
    return Event.of(LLMRequest(role=role, model="m", call_id=call_id, attempt=1, purpose="plan", structured=True,
                               messages=[]), seq, t)


def response(seq, t, cost_usd, call_id=None, role="planner"):
    return Event.of(LLMResponse(role=role, model="m", served_by="m", call_id=call_id or f"call-{seq}", attempt=1,
                                text="", finish_reason="stop", refused=False, input_tokens=1, output_tokens=1,
                                usage_estimated=False, cost_usd=cost_usd, priced=True, seconds=0.1), seq, t)


def test_budgets_sum_over_sessions():
    history = [session(0, 100), result(1, 160, wall_seconds=50, gpus=2), session(2, 400, RunResumed),
               response(3, 460, 0.25), response(4, 500, 0.5)]
    assert wall_seconds(history, now=520) == 60 + 120
    assert gpu_seconds(history) == 100
    assert llm_cost(history) == 0.75


def test_exhausted_names_the_budget(tmp_path):
    history = [session(0, 0), response(1, 7200, 3.0)]
    assert RunControl(tmp_path, Budgets(wall_hours=1)).exhausted(history, now=7200).startswith("wall-time budget")
    assert RunControl(tmp_path, Budgets(llm_cost_usd=2)).exhausted(history, now=1).startswith("LLM budget")
    assert RunControl(tmp_path, Budgets(wall_hours=5, llm_cost_usd=5)).exhausted(history, now=7200) == ""


def test_a_job_in_flight_commits_its_gpus_and_time_before_it_ends(tmp_path):
    # one full job took 100 s on 1 GPU; a second has run 10 s on 2 GPUs: it commits 2 x 100 GPU-seconds, 90 s more
    history = [session(0, 0), started(1, 0, "c001-full-0", 1), result(2, 100, 100, 1, "c001-full-0", "full"),
               started(3, 190, "c002-full-0", 2)]
    found = committed(history, now=200)
    assert found.gpu_seconds == 100 + 200 and found.in_flight["gpu_seconds"] == 200
    assert found.wall_seconds == 200 + 90
    control = RunControl(tmp_path, Budgets(gpu_hours=250 / 3600))
    assert "GPU budget" in control.exhausted(history, now=200) and "committed by work in flight" in \
        control.exhausted(history, now=200)
    assert control.exhausted(history[:3], now=200) == ""          # what was spent alone is under the cap
    assert "wall-time" in RunControl(tmp_path, Budgets(wall_hours=280 / 3600)).exhausted(history, now=200)
    # a job past the typical time commits what it has run so far
    assert committed(history, now=490).in_flight["gpu_seconds"] == 2 * 300


def test_an_llm_request_in_flight_commits_what_its_role_costs(tmp_path):
    history = [session(0, 0), response(1, 1, 0.4, role="coder"), response(2, 2, 0.6, role="coder"),
               request(3, 3, "call-9", role="coder")]
    assert committed(history, now=4).llm_cost_usd == 1.0 + 0.5        # the coder's median answer
    assert "LLM budget" in RunControl(tmp_path, Budgets(llm_cost_usd=1.2)).exhausted(history, now=4)
    answered = history + [response(4, 5, 0.1, call_id="call-9", role="coder")]
    assert committed(answered, now=6).llm_cost_usd == 1.1
    assert RunControl(tmp_path, Budgets(llm_cost_usd=1.2)).exhausted(answered, now=6) == ""


def test_work_of_an_earlier_session_is_not_in_flight():
    history = [session(0, 0), started(1, 0, "c001-full-0", 1), request(2, 1, "call-1"),
               session(3, 50, RunResumed)]                     # killed with its session: it runs no more
    found = committed(history, now=60)
    assert found.in_flight == {"wall_seconds": 0.0, "gpu_seconds": 0.0, "llm_cost_usd": 0.0}


def test_stop_file_is_a_safe_point_stop(tmp_path):
    control = RunControl(tmp_path)
    control.safe_point()
    (tmp_path / "STOP").write_text("")
    try:
        control.safe_point()
        raise AssertionError("expected a stop")
    except StopRequested as exc:
        assert "archlab stop" in str(exc)
    control.clear()
    control.safe_point()


def test_a_run_ends_cleanly_when_its_wall_budget_is_spent(tmp_path):
    out = archlab("run", "--rounds", "5", "--runs-dir", str(tmp_path), extra_env={"ARCHLAB_BUDGET__WALL_HOURS": "0.0001"})
    assert out.returncode == 0, out.stderr
    log = events(only_run(tmp_path))
    assert any(e["type"] == "budget_exhausted" for e in log)
    assert log[-1]["type"] == "run_finished" and "wall-time budget" in log[-1]["payload"]["reason"]
    assert not any(e["type"] == "round_started" for e in log)
