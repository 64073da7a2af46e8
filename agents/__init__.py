"""Agents: the LangGraph research graph (plan, code, check, fix, evaluate, analyze, select) and its LLM backends.

Owns `Candidate` and `Event`. Imports `knowledge`, `evaluators` and the wire records (`wire`);
nothing here imports `archlab`.
"""
