from agents.control import Budgets, RunControl, StopRequested, gpu_seconds, llm_cost, wall_seconds
from agents.event_types import JobResult, LLMResponse, RunResumed, RunStarted
from agents.events import Event
from tests.runs_support import archlab, events, only_run


def session(seq, t, kind=RunStarted):
    return Event.of(kind(run_id="r", task="mqar", rounds=1, engine="offline", sandbox="process",
                         spec={"name": "mqar", "family": "sequence"}), seq, t)


def result(seq, t, wall_seconds, gpus):
    return Event.of(JobResult(job_id="c001-short-0", candidate_id="c001", fidelity="short", status="ok", metrics={},
                              message="", timings={"wall_seconds": wall_seconds}, gpus=gpus), seq, t)


def response(seq, t, cost_usd):
    return Event.of(LLMResponse(role="planner", model="m", served_by="m", call_id=f"call-{seq}", attempt=1, text="",
                                finish_reason="stop", refused=False, input_tokens=1, output_tokens=1,
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
