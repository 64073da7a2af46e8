"""The research graph: baselines, then per round select -> plan -> code -> check (-> fix)* -> [review] ->
evaluate (short, then full when promoted, each optionally gated by review) -> analyze.

All edges are declared here. The graph is compiled with a checkpointer (SQLite in the run
directory by default) and must be invoked with `durability="sync"` so a SIGKILL never loses
the last finished node.
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.lab import Lab
from agents.nodes import analyze, baselines, check, code, evaluate, plan, review, select
from agents.state import LoopState


def build_graph(lab: Lab, checkpointer=None):
    graph = StateGraph(LoopState)
    graph.add_node("baselines", baselines.make(lab))
    graph.add_node("select", select.make(lab))
    graph.add_node("plan", plan.make(lab))
    graph.add_node("code", code.make(lab))
    graph.add_node("check", check.make_check(lab))
    graph.add_node("fix", check.make_fix(lab))
    graph.add_node("review", review.make(lab))
    graph.add_node("evaluate", evaluate.make(lab))
    graph.add_node("analyze", analyze.make(lab))

    graph.add_edge(START, "baselines")
    graph.add_edge("baselines", "select")
    graph.add_conditional_edges("select", select.route_after_select, {"plan": "plan", "__end__": END})
    graph.add_edge("plan", "code")
    graph.add_edge("code", "check")
    graph.add_conditional_edges("check", check.route_after_check(lab), ["review", "evaluate", "fix", "analyze"])
    graph.add_edge("fix", "check")
    graph.add_conditional_edges("review", review.route_after_review(lab), ["check", "evaluate", "analyze"])
    graph.add_conditional_edges("evaluate", evaluate.route_after_evaluate(lab), ["review", "evaluate", "analyze"])
    graph.add_edge("analyze", "select")
    return graph.compile(checkpointer=checkpointer)
