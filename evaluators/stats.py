"""Statistics over repeated evaluations: is a candidate really better, and better than chance?

- `mean_ci(values)`: mean and Student-t confidence interval over >= 3 seeds (fewer is refused:
  two seeds give an interval too wide to mean anything, one gives none).
- `difference(child, parent)`: Welch's interval for the difference of means; the child is
  `better` only when the whole interval lies above zero ("better beyond the interval").
- `improvement_over_random(value, pool)`: how far a score is above the average random
  architecture of a pool (the baseline a search must beat), in raw units and in pool
  standard deviations, with the share of the pool it beats.
- `noise_floor(groups)`: the seed-to-seed spread of architectures each measured over several
  seeds (the pooled standard deviation), and the half-width of the 95% interval of the
  difference between two single-seed results it implies: a difference between two single
  runs smaller than that is inside the noise.

Higher is better throughout; negate losses before calling. Runs on the host; pure numbers in,
pure numbers out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SEEDS = 3
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _finite(values) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("values contain NaN or inf; drop failed runs before computing statistics")
    return array


def mean_ci(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and two-sided Student-t interval; raises ValueError for fewer than `MIN_SEEDS` values."""
    array = _finite(values)
    n = len(array)
    if n < MIN_SEEDS:
        raise ValueError(f"a confidence interval needs at least {MIN_SEEDS} seeds, got {n}; evaluate more seeds")
    mean = float(array.mean())
    sem = float(array.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sem)
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class Difference:
    delta: float        # child mean - parent mean
    low: float          # interval of the difference
    high: float
    better: bool        # the whole interval is above zero
    worse: bool         # the whole interval is below zero


def difference(child, parent, confidence: float = CONFIDENCE) -> Difference:
    """Welch's t interval for mean(child) - mean(parent) over seeds (>= 3 each)."""
    a, b = _finite(child), _finite(parent)
    if min(len(a), len(b)) < MIN_SEEDS:
        raise ValueError(f"comparing needs at least {MIN_SEEDS} seeds on each side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    delta = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(delta, delta, delta, delta > 0, delta < 0)
    dof = (va + vb) ** 2 / ((va ** 2) / (len(a) - 1) + (vb ** 2) / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * se)
    return Difference(delta, delta - half, delta + half, delta - half > 0, delta + half < 0)


@dataclass(frozen=True)
class OverRandom:
    delta: float        # value - mean of the pool
    z: float            # delta in pool standard deviations (0 when the pool does not vary)
    beats: float        # share of the pool strictly below the value


def improvement_over_random(value: float, pool) -> OverRandom:
    """How much `value` improves on the average random architecture of `pool` (its scores)."""
    array = _finite(pool)
    if len(array) == 0:
        raise ValueError("the random pool is empty")
    delta = float(value - array.mean())
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return OverRandom(delta, delta / std if std > 0 else 0.0, float((array < value).mean()))


@dataclass(frozen=True)
class NoiseFloor:
    half_width: float   # of the 95% interval of a difference between two single-seed results: the floor
    std: float          # pooled seed-to-seed standard deviation of one result
    dof: int            # degrees of freedom of `std` (results minus groups)
    results: int        # single-seed results it rests on
    groups: int         # architectures (each measured over >= 2 seeds)


def noise_floor(groups, confidence: float = CONFIDENCE) -> NoiseFloor | None:
    """The seed-to-seed noise of single results, from `groups` (each the per-seed values of one architecture);
    groups with fewer than 2 values carry no spread and are left out. None when nothing is left.

    The floor is Student-t's half-width for a difference of two independent single results,
    t(dof) * std * sqrt(2): with few degrees of freedom it is wide, as it should be.
    """
    arrays = [_finite(g) for g in groups]
    arrays = [a for a in arrays if len(a) >= 2]
    dof = sum(len(a) - 1 for a in arrays)
    if dof < 1:
        return None
    std = math.sqrt(sum(float(((a - a.mean()) ** 2).sum()) for a in arrays) / dof)
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * std * math.sqrt(2))
    return NoiseFloor(half, std, dof, sum(len(a) for a in arrays), len(arrays))
