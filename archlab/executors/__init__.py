"""Executors: where a run's evaluation jobs go, and how many run at once.

`Executor` (in `base`) is the seam: `run(job, jobdir, evaluate)` blocks until a worker is free,
runs the job there and returns its classified `EvalResult`, exactly as a sandbox does; it is
safe to call from several threads (the graph's branches of a round). `local.LocalExecutor`
runs up to `workers` jobs at once on this machine, each in its own sandbox (warm, one-shot
workers by default), with GPU slots handed out so jobs never share a device unless allowed.
`capacity` derives the worker count and threads per job from the machine. A cluster executor
(Ray) implements the same protocol.
"""
from archlab.executors.base import Executor, JobStarted
from archlab.executors.capacity import Capacity, plan_capacity

__all__ = ["Capacity", "Executor", "JobStarted", "plan_capacity"]
