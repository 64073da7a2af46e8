"""Learning-curve extrapolation: predict a full-budget loss from a short run's curve.

The model is a saturating power law, L(t) = a * t^-b + c (a >= 0 scale, b in [0, 3] rate,
c >= 0 the irreducible loss), the form used for learning curves by Domhan et al. (2015,
"pow3") and for scaling laws. `fit_power_law` fits it with `scipy.optimize.curve_fit`
(trust-region reflective, bounded), skipping the warm-up part of the curve, from several
starting points, and keeps the fit with the smallest squared error. When the fit fails or
the curve is too short or flat, it falls back to a constant at the last observed loss (a
conservative prediction that never extrapolates a curve it cannot describe).

What it does not model: the learning-rate schedule. A short run decays its own cosine
schedule over fewer steps, so its last points are flatter than the same steps of a full
run; the prediction is a ranking signal (`evaluators.promotion`), not a forecast to trust to
the third digit. `benchmarks/proxy_validation.py` measures how well it ranks.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from evaluators.fidelities import curve_steps

SKIP_FRACTION = 0.2   # leading share of the curve ignored (warm-up, the first fast drop)
MIN_POINTS = 4        # fewer usable points than this: no fit, constant fallback
B_MAX = 3.0           # steepest decay rate allowed


@dataclass(frozen=True)
class PowerLaw:
    """L(t) = a * t^-b + c; `fitted` is False for the constant fallback (a = 0, c = last loss)."""

    a: float
    b: float
    c: float
    fitted: bool
    rmse: float = 0.0

    def __call__(self, t: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(np.maximum(t, 1.0), -self.b) + self.c


def _law(t, a, b, c):
    return a * np.power(t, -b) + c


def fit_power_law(steps, losses) -> PowerLaw:
    """The bounded least-squares power law through (steps, losses), or the constant fallback."""
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    t, y = t[keep], y[keep]
    if len(y) == 0:
        return PowerLaw(0.0, 0.0, math.nan, fitted=False)
    fallback = PowerLaw(0.0, 0.0, float(y[-1]), fitted=False)
    start = int(len(y) * SKIP_FRACTION)
    t, y = t[start:], y[start:]
    if len(y) < MIN_POINTS or np.ptp(y) <= 1e-9 * max(1.0, abs(y).max()):
        return fallback
    lo = max(float(y.min()), 1e-9)          # the floor c lies in [0, lowest loss seen]
    best: PowerLaw | None = None
    for b0 in (0.3, 1.0, 2.0):
        c0 = min(max(0.0, lo - 0.1 * np.ptp(y)), 0.999 * lo)
        a0 = max(1e-6, (y[0] - c0) * t[0] ** b0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                (a, b, c), _ = curve_fit(_law, t, y, p0=(a0, b0, c0), bounds=([0.0, 0.0, 0.0], [np.inf, B_MAX, lo]),
                                         method="trf", maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        rmse = float(np.sqrt(np.mean((_law(t, a, b, c) - y) ** 2)))
        if math.isfinite(rmse) and (best is None or rmse < best.rmse):
            best = PowerLaw(float(a), float(b), float(c), fitted=True, rmse=rmse)
    return best if best is not None else fallback


def extrapolate(curve, short_steps: int, full_steps: int) -> float:
    """The loss a run of `full_steps` would reach, predicted from the `curve` of a `short_steps` run.

    `curve` is `train`'s learning curve (`EvalResult.curve`): its points stand for the steps
    `fidelities.curve_steps` gives. The prediction is never above the short run's last loss
    (more steps of the same recipe are assumed not to hurt) nor below the fitted floor c.
    """
    return _extrapolated(tuple(float(v) for v in curve), int(short_steps), int(full_steps))


@functools.lru_cache(maxsize=16384)
def _extrapolated(losses: tuple[float, ...], short_steps: int, full_steps: int) -> float:
    """`extrapolate`, remembered: the loop asks it for every candidate's recorded curve at every rung decision and
    tau report, and a curve fit costs milliseconds; without this the time between jobs grows with the run."""
    if not losses:
        return math.nan
    return extrapolate_at(curve_steps(short_steps, len(losses)), list(losses), full_steps)


def extrapolate_at(steps, losses, target: float) -> float:
    """The loss at `target` predicted from a curve observed at `steps` (epochs, steps, any positive unit).

    The same rule as `extrapolate`: the fitted power law at `target`, never above the last
    observed loss; the last loss itself when no law can be fitted (fewer than `MIN_POINTS`
    usable points, a flat curve).
    """
    losses = [float(v) for v in losses]
    if not losses:
        return math.nan
    law = fit_power_law(steps, losses)
    if not law.fitted:
        return losses[-1]
    return float(min(losses[-1], law(float(target))))
