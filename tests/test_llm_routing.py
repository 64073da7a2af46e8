"""Several models per role: the router picks, per candidate, the model with the most improvement per dollar.

Unit tests of `agents.llm.routing` on records with known numbers, then the engine against two
loopback endpoints (one model each, each with its own key): the chosen model is the one
asked, every call names the candidate it served, and the choice is logged.
"""
from __future__ import annotations

import json

import pytest

from agents.engine import PlanContext
from agents.event_types import LLMResponse, ModelsChosen
from agents.llm.client import Pricing
from agents.llm.fake import Answer, FakeEndpoint
from agents.llm.routing import Ledger, Router
from agents.llm.settings import LLMSettings
from evaluators.fitness import Objective
from tests.llm_support import ANALYSIS, KEY, PLAN, SPEC, baselines, child, engine, fenced, module, settings

ACCURACY = Objective(metric="accuracy", higher_is_better=True)
PRICED = {"a": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}, "b": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}


def router(**over) -> Router:
    llm = LLMSettings(**{"planner_model": ["a", "b"], "prices": PRICED, "routing_exploration": 0.0, **over})
    return Router(llm, Pricing(llm.prices))


def response(cid: str, model: str, usd: float = 0.0, seconds: float = 1.0, role: str = "planner") -> LLMResponse:
    return LLMResponse(role=role, model=model, candidate_id=cid, served_by=model, call_id="x", attempt=1, text="",
                       finish_reason="stop", refused=False, input_tokens=1, output_tokens=1, usage_estimated=False,
                       cost_usd=usd, priced=usd > 0, seconds=seconds)


def choose(route: Router, candidates, calls, collected=None, cid="c009") -> ModelsChosen:
    context = PlanContext(spec=SPEC, round=2, parent=candidates[0], candidates=candidates, candidate_id=cid,
                          collected=collected)
    return route.choose(context, Ledger().read(calls), ACCURACY)


def arm(chosen: ModelsChosen, model: str, role: str = "planner"):
    return next(a for a in chosen.arms if a.model == model and a.role == role)


def test_a_single_model_per_role_needs_no_router():
    assert not Router(LLMSettings(), Pricing({})).active
    assert router().options == {"planner": ["a", "b"]}


def test_models_not_tried_yet_are_tried_first_in_the_order_listed():
    assert choose(router(), baselines(), []).models == {"planner": "a"}
    chosen = choose(router(), [*baselines(), child("c001", 0.9)], [response("c001", "a", usd=0.01)])
    assert chosen.models == {"planner": "b"} and arm(chosen, "b").bound is None


def test_the_model_with_more_improvement_per_dollar_is_chosen():
    # both improved on their parent (b-softmax, 0.6) by 0.1; b's calls cost a tenth of a's
    records = [*baselines(), child("c001", 0.7), child("c002", 0.7)]
    calls = [response("c001", "a", usd=0.01), response("c002", "b", usd=0.001)]
    chosen = choose(router(), records, calls)
    assert chosen.models == {"planner": "b"}
    assert arm(chosen, "a").value == pytest.approx(10.0) and arm(chosen, "b").value == pytest.approx(100.0)
    assert arm(chosen, "a").unit == "usd" and arm(chosen, "a").pulls == 1
    # a's candidate improved twenty times as much: a is worth more per dollar despite its price
    chosen = choose(router(), [*baselines(), child("c001", 0.8), child("c002", 0.601)], calls)
    assert chosen.models == {"planner": "a"}


def test_a_worse_candidate_gains_nothing_rather_than_something_negative():
    records = [*baselines(), child("c001", 0.1), child("c002", 0.61)]
    chosen = choose(router(), records, [response("c001", "a", usd=0.001), response("c002", "b", usd=0.01)])
    assert arm(chosen, "a").gain == 0 and arm(chosen, "b").gain == pytest.approx(0.01)
    assert chosen.models == {"planner": "b"}


def test_a_plan_that_never_became_a_candidate_costs_its_model():
    # c002 ended at its plan (no record): its calls count against b, with nothing gained
    records = [*baselines(), child("c001", 0.65)]
    calls = [response("c001", "a", usd=0.01), response("c002", "b", usd=0.001)]
    chosen = choose(router(), records, calls, collected=["c001", "c002"])
    assert arm(chosen, "b").pulls == 1 and arm(chosen, "b").gain == 0
    assert chosen.models == {"planner": "a"}
    # a branch outside the snapshot (collected after this one was proposed) is not read
    later = choose(router(), records, calls, collected=["c001"])
    assert arm(later, "b").pulls == 0 and later.models == {"planner": "b"}


def test_models_without_a_price_are_compared_per_second_of_answer():
    route = router(prices={})
    records = [*baselines(), child("c001", 0.7), child("c002", 0.7)]
    chosen = choose(route, records, [response("c001", "a", seconds=20.0), response("c002", "b", seconds=2.0)])
    assert arm(chosen, "a").unit == "seconds" and chosen.models == {"planner": "b"}


def test_ties_go_to_the_cheaper_model():
    records = [*baselines(), child("c001", 0.5), child("c002", 0.5)]      # neither improved
    chosen = choose(router(), records, [response("c001", "a", usd=0.02), response("c002", "b", usd=0.01)])
    assert chosen.models == {"planner": "b"}


def test_exploration_goes_back_to_a_model_tried_less():
    records = [*baselines(), *(child(f"c00{i}", 0.7) for i in range(1, 6))]
    calls = [response(f"c00{i}", "a", usd=0.001) for i in range(1, 5)] + [response("c005", "b", usd=0.002)]
    assert choose(router(routing_exploration=0.0), records, calls).models == {"planner": "a"}
    assert choose(router(routing_exploration=2.0), records, calls).models == {"planner": "b"}


def test_the_analyst_is_credited_with_the_children_of_what_it_analysed():
    route = router(planner_model="a", analyst_model=["a", "b"])
    c001, c002 = child("c001", 0.7), child("c002", 0.7)
    grandchild = child("c003", 0.9).model_copy(update={"parent_ids": ["c001"]})       # built on c001's analysis
    calls = [response("c001", "a", usd=0.01, role="analyst"), response("c002", "b", usd=0.01, role="analyst")]
    chosen = choose(route, [*baselines(), c001, c002, grandchild], calls)
    assert arm(chosen, "a", "analyst").pulls == 1 and arm(chosen, "a", "analyst").gain == pytest.approx(0.2)
    assert arm(chosen, "b", "analyst").pulls == 0            # c002 has no child yet: not a pull
    assert chosen.models == {"analyst": "b"}                 # so b is tried


def test_the_engine_asks_the_chosen_model_at_its_own_endpoint_and_logs_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("SECOND_KEY", "sk-second-endpoint-9d8c7b6a")
    with FakeEndpoint({"planner-m": [], "coder-m": [Answer.text(fenced(module(40)))],
                       "analyst-m": [Answer.json(ANALYSIS)]}) as first, \
            FakeEndpoint({"planner-b": [Answer.json(PLAN)]}) as second:
        llm, lab = engine(first.url, tmp_path, planner_model=["planner-m", "planner-b"],
                          endpoints={"planner-b": {"base_url": second.url, "api_key_env": "SECOND_KEY"}})
        records = [*baselines(), child("c001", 0.7)]
        # c001 was planned by planner-m: planner-b has not been tried, so it serves c002
        llm.client.emit(response("c001", "planner-m", usd=0.01))
        context = PlanContext(spec=SPEC, round=2, parent=records[2], candidates=records, candidate_id="c002",
                              collected=["c001"], objective=ACCURACY)
        plan = llm.plan(context).model_copy(update={"candidate_id": "c002"})
        assert plan.models == {"planner": "planner-b"}
        assert second.received[0].authorization == "Bearer sk-second-endpoint-9d8c7b6a"
        assert not first.requests_for("planner-b")
        llm.code(plan, records[2], SPEC)
        new = child("c002", 0.7).model_copy(update={"models": plan.models})
        llm.analyze(new, records[2], baselines())
    log = [e.data for e in lab.events.history]
    chosen = [d for d in log if isinstance(d, ModelsChosen)]
    assert [c.models for c in chosen] == [{"planner": "planner-b"}] and chosen[0].candidate_id == "c002"
    served = {(d.role, d.model, d.candidate_id) for d in log if isinstance(d, LLMResponse)}
    assert served >= {("planner", "planner-b", "c002"), ("coder", "coder-m", "c002"), ("analyst", "analyst-m", "c002")}
    written = (tmp_path / "events.jsonl").read_text()
    assert "sk-second-endpoint-9d8c7b6a" not in written and KEY not in written
    assert json.loads(written.splitlines()[-1])["type"]


def test_several_models_are_read_from_toml_and_environment(tmp_path, monkeypatch):
    from archlab.settings import load_settings
    config = tmp_path / "archlab.toml"
    config.write_text('[llm]\nplanner_model = ["small", "large"]\n\n[llm.endpoints.small]\n'
                      'base_url = "http://127.0.0.1:9/v1"\n')
    loaded = load_settings(config)
    assert loaded.llm.models("planner") == ["small", "large"] and loaded.llm.endpoints["small"].base_url.endswith(":9/v1")
    monkeypatch.setenv("ARCHLAB_LLM__CODER_MODEL", '["c1", "c2"]')
    assert load_settings(config).llm.models("coder") == ["c1", "c2"]
    with pytest.raises(ValueError, match="at least one model"):
        settings("http://127.0.0.1:9/v1", planner_model=[])


def test_a_model_on_the_same_server_with_a_key_of_its_own_is_sent_that_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OTHER_KEY", "sk-other-key-for-planner-b-0a1b2c")
    with FakeEndpoint({"planner-m": [Answer.text("ok")], "planner-b": [Answer.text("ok")]}) as fake:
        llm, _ = engine(fake.url, tmp_path, planner_model=["planner-m", "planner-b"],
                        endpoints={"planner-b": {"base_url": fake.url, "api_key_env": "OTHER_KEY"}})
        llm.client.chat("planner", [{"role": "user", "content": "hi"}], model="planner-m")
        llm.client.chat("planner", [{"role": "user", "content": "hi"}], model="planner-b")
    assert [r.authorization for r in fake.received] == [f"Bearer {KEY}", "Bearer sk-other-key-for-planner-b-0a1b2c"]
