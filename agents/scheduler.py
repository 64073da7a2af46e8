"""`BranchPool`: candidate branches running side by side, each its own checkpointed graph thread.

The run's graph (`agents.graph`) proposes a branch as soon as there is room and collects
branches one at a time as they end; this pool is what runs them in between. A branch is the
candidate subgraph invoked under its own checkpoint thread (`<run id>:<candidate id>`) in a
Python thread of this process, so it is checkpointed node by node like any graph, and a
resumed run picks each branch up where its last node ended (`ensure` starts every branch
the run's state holds in flight that is not running here yet: from its checkpoint if it
has one, from its recorded start state if not, or not at all if it already ended).

Reviews: a branch that stops on an interrupt (`agents.nodes.review`) waits for its decision
in its own thread (`wait_for_review`, set by `archlab.session.drive`), so its siblings go on.

Order: `next_done()` hands back branches in the order they end; a replay passes the id the
recorded run collected next (`Lab.collect_order`), so the same decisions come out however
the replayed jobs interleave. A branch that raised (a stop, a sandbox fault, a divergence)
hands back its exception, which the caller raises.

What it does not do: decide anything (the `select` and `analyze` nodes do), hold state a
checkpoint does not (what runs here is rebuilt from the run's state on resume), or kill a
job: `close()` asks the branches to stop at their next safe point and waits for them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from agents.lab import Lab, in_branch
from agents.replay import ReplayDivergence

RECURSION_LIMIT = 1_000          # graph steps per branch invocation; a branch takes about 10

@dataclass
class Ended:
    """How a branch ended: its output (`agents.state.BranchOutput`) or the exception it raised."""

    candidate_id: str
    output: dict[str, Any]
    error: BaseException | None = None


class BranchPool:
    def __init__(self, lab: Lab, graph: Any, thread_prefix: str):
        self.lab = lab
        self.graph = graph
        self.thread_prefix = thread_prefix
        self.wait_for_review: Callable[[list], Any] | None = None     # interrupts -> the Command that resumes
        self._threads: dict[str, threading.Thread] = {}
        self._ended: list[Ended] = []
        self._cond = threading.Condition()
        self._closing = False

    def config(self, candidate_id: str) -> dict:
        return {"configurable": {"thread_id": f"{self.thread_prefix}:{candidate_id}"},
                "recursion_limit": RECURSION_LIMIT}

    # --- starting ------------------------------------------------------------------------
    def ensure(self, in_flight: dict[str, dict]) -> None:
        """Run every branch of `in_flight` (candidate id -> start state) that is not running in this process."""
        with self._cond:
            if self._closing:
                return
            for candidate_id, start in in_flight.items():
                if candidate_id not in self._threads:
                    thread = threading.Thread(target=self._run, args=(candidate_id, start), daemon=True,
                                              name=f"archlab-branch-{candidate_id}")
                    self._threads[candidate_id] = thread
                    thread.start()

    def _run(self, candidate_id: str, start: dict) -> None:
        try:
            with in_branch(candidate_id):       # its jobs are logged as this branch's (`Lab.peers`)
                ended = Ended(candidate_id, self._drive(candidate_id, start))
        except BaseException as exc:        # handed to the collecting node, which raises it in the run's thread
            ended = Ended(candidate_id, {}, exc)
        with self._cond:
            self._ended.append(ended)
            self._cond.notify_all()

    def _drive(self, candidate_id: str, start: dict) -> dict:
        config = self.config(candidate_id)
        snapshot = self.graph.get_state(config)
        if snapshot.created_at is None:          # never checkpointed: start from the recorded state
            payload: Any = start
        elif not snapshot.next:                  # ended before the run could collect it
            return dict(snapshot.values)
        else:                                    # resume where its last node ended (a pending review asks again)
            payload = None
        while True:
            state = self.graph.invoke(payload, config, durability="sync") or {}   # None: it handed back nothing
            interrupts = state.get("__interrupt__") or []
            if not interrupts:
                return {k: v for k, v in state.items() if k != "__interrupt__"}
            if self.wait_for_review is None:
                raise RuntimeError(f"{candidate_id} waits for a review, and this run has no way to take one")
            payload = self.wait_for_review(list(interrupts))

    # --- collecting ----------------------------------------------------------------------
    def next_done(self, expected: str | None = None, poll_seconds: float = 0.5) -> Ended:
        """The next branch to end (or `expected`, once it has), taken out of the pool; waits for it.

        A requested stop is honoured while waiting (`RunControl.safe_point`)."""
        with self._cond:
            while True:
                for i, ended in enumerate(self._ended):
                    if expected is None or ended.candidate_id == expected:
                        del self._ended[i]
                        self._threads.pop(ended.candidate_id, None)
                        return ended
                if expected is not None and expected not in self._threads:
                    raise ReplayDivergence(f"the recorded run collected {expected} next, and the replay never "
                                            "proposed it")
                if not self._threads:
                    raise RuntimeError("no branch is in flight to wait for")
                self._cond.wait(poll_seconds)
                self.lab.control.safe_point()

    def running(self) -> list[str]:
        with self._cond:
            return sorted(self._threads)

    def close(self) -> None:
        """Ask every branch to stop at its next safe point (a running job finishes first), and wait for them."""
        with self._cond:
            self._closing = True
            threads = [t for t in self._threads.values() if t.is_alive()]
        if threads and not self.lab.control.stop_reason():
            self.lab.control.request_stop("the run is ending")
        for thread in threads:
            thread.join()
