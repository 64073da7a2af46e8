"""The `offline` research engine: a deterministic planner, coder and analyst built from a library of blocks."""
