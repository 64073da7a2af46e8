"""What the loop may do, as the run's settings say: `LoopSettings` (the `[loop]` section) and `LoopLimits`.

`LoopSettings` is defined here, where the loop reads it, and is the `[loop]` section of
`archlab.settings.Settings` as it is (the application shell imports it; agents never import
the shell). `LoopLimits` is what the loop reads, resolved once when a run opens
(`archlab.session.open_lab`): that section itself, plus the few values other sections
decide (rounds, the findings retrieved per plan, the review policy, the jobs' limits). Nothing
is copied by hand from one to the other, so a default cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from wire.jobs import Limits


class LoopSettings(BaseModel):
    max_fix_attempts: int = Field(default=2, ge=0)      # failed checks sent back to the coder per round
    explore: float = Field(default=0.5, ge=0, le=5)     # weight of the novelty term in parent tournaments (0: quality alone decides)
    proxy_rung: bool = True                             # measure zero-cost proxies before training, and screen on them
    keep_proxy: float = Field(default=0.75, gt=0, le=1)  # top share of the proxy rung (by cheap score) trained at `short`
    promote_fraction: float = Field(default=0.0, ge=0, le=1)  # top share of the short rung trained at `full` (0: none)
    full_seeds: int = Field(default=3, ge=3, le=20)     # seeds per `full` evaluation: mean and 95% interval need >= 3
    random_pool: int = Field(default=0, ge=0, le=64)    # random architectures trained in round 0: "better than random"
    noise_seeds: int = Field(default=2, ge=1, le=10)    # runs of each baseline at `short` in round 0: their spread is the noise floor (1: none)
    batch: int | None = Field(default=None, ge=1, le=64)  # proposals per round, and branches evaluated at once; None: = workers
    # proposals made ahead while every worker is busy (planned and checked while jobs run), so a freed worker finds
    # its next job ready: up to batch + lookahead branches are in flight; rounds are a unit of count, not a barrier
    lookahead: int = Field(default=1, ge=0, le=64)


@dataclass(frozen=True)
class LoopLimits:
    rounds: int
    loop: LoopSettings = field(default_factory=LoopSettings)
    findings_k: int = 5                # nearest findings retrieved per plan (`knowledge.k`)
    review_policy: str = "never"       # never | always | before-full | new-idea (`review.policy`)
    check_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=120))
    train_limits: Limits = field(default_factory=lambda: Limits(wall_seconds=600))

    @property
    def keep_proxy(self) -> float | None:
        """Top share of proxy-ranked candidates trained at `short`; None: no proxy rung."""
        return self.loop.keep_proxy if self.loop.proxy_rung else None

    @property
    def batch(self) -> int:
        """Proposals per round and branches evaluated at once (`loop.batch`, which the machine's workers fill in)."""
        return self.loop.batch or 1
