from agents.control import Budgets, RunControl, StopRequested, gpu_seconds, llm_cost, wall_seconds
from agents.events import Event
from tests.runs_support import archlab, events, only_run


def ev(seq, t, type, **payload):
    return Event(seq=seq, time=t, type=type, payload=payload)


def test_budgets_sum_over_sessions():
    history = [ev(0, 100, "run_started"), ev(1, 160, "result", timings={"wall_seconds": 50}, gpus=2),
               ev(2, 400, "run_resumed"), ev(3, 460, "llm_response", cost_usd=0.25), ev(4, 500, "llm_response", cost_usd=0.5)]
    assert wall_seconds(history, now=520) == 60 + 120
    assert gpu_seconds(history) == 100
    assert llm_cost(history) == 0.75


def test_exhausted_names_the_budget(tmp_path):
    history = [ev(0, 0, "run_started"), ev(1, 7200, "llm_response", cost_usd=3.0)]
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
