"""The research graph: baselines, then select -> (a branch ends) -> analyze -> select ... with no round barrier.

    START -> baselines -> select --(branches in flight)--> analyze -> select ... -> END

`select` proposes branches until `batch + lookahead` are in flight; `analyze` waits for the
next branch to end (any one: the others keep running), analyses its candidate, and hands
back to `select`, which fills the room. The run ends when nothing is in flight and nothing
more will be proposed (rounds done, a budget used up, nothing new to propose).

A branch is the `candidate` graph, run by `agents.scheduler.BranchPool` under its own
checkpoint thread, side by side with the others:

    plan -> code -> check (-> fix -> check)* -> [review] -> evaluate (proxy -> short -> full,
    each optionally gated by review) -> END

so each is checkpointed node by node, and a branch interrupted for review waits while the
others go on. What a branch starts from is in the run's checkpointed state (`in_flight`)
until it is collected, so a resumed run starts every branch it had in flight again, from
the branch's own last checkpoint.

All edges are declared here. Both graphs are compiled with one checkpointer (SQLite in the
run directory by default) and must be invoked with `durability="sync"` so a SIGKILL never
loses the last finished node.
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.lab import Lab
from agents.nodes import analyze, baselines, check, code, evaluate, plan, review, select
from agents.scheduler import BranchPool
from agents.state import BranchOutput, CandidateState, LoopState


def build_candidate_graph(lab: Lab, checkpointer=None):
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
    return branch.compile(checkpointer=checkpointer)


def build_graph(lab: Lab, checkpointer=None, branches: BranchPool | None = None):
    """The run's graph; `branches` runs its candidate branches (made here when not given: close it when done)."""
    if branches is None:
        branches = BranchPool(lab, build_candidate_graph(lab, checkpointer), lab.run_id)
    graph = StateGraph(LoopState)
    graph.add_node("baselines", baselines.make(lab))
    graph.add_node("select", select.make(lab))
    graph.add_node("analyze", analyze.make(lab, branches))

    graph.add_edge(START, "baselines")
    graph.add_edge("baselines", "select")
    graph.add_conditional_edges("select", select.route_after_select, {"analyze": "analyze", "__end__": END})
    graph.add_edge("analyze", "select")
    return graph.compile(checkpointer=checkpointer)
