"""Evaluators: tasks (data + contract), fidelities, cheap proxies, benchmarking, hashing, fitness, promotion.

Tasks are the lab's plug-in point (`evaluators.tasks.base.Task`; found by name, entry point or
file in `evaluators.tasks`): everything that depends on the kind of task lives in the task.

Code here runs on both sides of the sandbox wall (`TaskSpec` itself lives in `wire.task`).

Inside the sandbox, with the candidate: `fidelities` (check, short, full), `contracts`
(per-family contract checks), `proxies` (the proxy fidelity), `bench` (the bench fidelity),
`funchash` (functional hashing), and each task's `train_batch`/`predict`.

On the trusted host: `harness` (runs a job and scores its predictions), each task's
`heldout`/`score`, `curves` (learning-curve extrapolation), `promotion` (successive halving
and the learned cheap score), `stats` (confidence intervals over seeds), `fitness`
(objectives under cost limits, Pareto fronts).

Imports nothing from `agents`, `knowledge`, `archlab` or the sandbox backends.
"""
