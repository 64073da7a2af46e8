"""Knowledge: the Chroma-backed memory of findings, and the embedders that make it work offline.

Owns `Finding`. Imports nothing from `agents`, `archlab` or `sandbox`.
"""
