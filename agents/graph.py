"""The research graph: baselines, then per round select -> a batch of candidate branches -> analyze.

    START -> baselines -> select --Send x batch--> candidate -> analyze -> select ... -> END

`candidate` is a subgraph, one branch per candidate of the round, all running at once:

    plan -> code -> check (-> fix -> check)* -> [review] -> evaluate (proxy -> short -> full,
    each optionally gated by review) -> END

Branches are LangGraph `Send`s into the `candidate` subgraph, so each branch is checkpointed
node by node under its own namespace, and a branch interrupted for review waits while its
siblings go on. `analyze` runs once all branches of the round are done and takes the
candidates in id order, so a replay sees the same decisions however the jobs interleaved.

All edges are declared here. The graph is compiled with a checkpointer (SQLite in the run
directory by default) and must be invoked with `durability="sync"` so a SIGKILL never loses
the last finished node.
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.lab import Lab
from agents.nodes import analyze, baselines, check, code, evaluate, plan, review, select
from agents.state import BranchOutput, CandidateState, LoopState


def build_candidate_graph(lab: Lab):
    branch = StateGraph(CandidateState, output_schema=BranchOutput)
    branch.add_node("plan", plan.make(lab))
    branch.add_node("code", code.make(lab))
    branch.add_node("check", check.make_check(lab))
    branch.add_node("fix", check.make_fix(lab))
    branch.add_node("review", review.make(lab))
    branch.add_node("evaluate", evaluate.make(lab))

    branch.add_edge(START, "plan")
    branch.add_conditional_edges("plan", plan.route_after_plan, {"code": "code", "__end__": END})
    branch.add_edge("code", "check")
    branch.add_conditional_edges("check", check.route_after_check(lab), ["review", "evaluate", "fix", END])
    branch.add_edge("fix", "check")
    branch.add_conditional_edges("review", review.route_after_review(lab), ["check", "evaluate", END])
    branch.add_conditional_edges("evaluate", evaluate.route_after_evaluate(lab), ["review", "evaluate", END])
    return branch.compile()


def build_graph(lab: Lab, checkpointer=None):
    graph = StateGraph(LoopState)
    graph.add_node("baselines", baselines.make(lab))
    graph.add_node("select", select.make(lab))
    graph.add_node("candidate", build_candidate_graph(lab))
    graph.add_node("analyze", analyze.make(lab))

    graph.add_edge(START, "baselines")
    graph.add_edge("baselines", "select")
    graph.add_conditional_edges("select", select.route_after_select, ["candidate", END])
    graph.add_edge("candidate", "analyze")
    graph.add_conditional_edges("analyze", analyze.route_after_analyze, {"select": "select", "__end__": END})
    return graph.compile(checkpointer=checkpointer)
