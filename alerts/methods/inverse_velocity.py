"""Failure-time forecast by Fukuzono's inverse-velocity law, fitted over the tertiary phase
only, with a confidence band. See docs/methods.md, "Failure forecast".

Fukuzono (1985): d²x/dt² = A·(dx/dt)^α with α ≈ 2, so 1/v = (t_f − t)/A falls linearly to zero
at the failure time t_f. Fitting the straight line through 1/v needs velocities, i.e.
differentiated noise; its integral is the same law in displacement:

    x(t) = c − A·ln(t_f − t)

which is fitted here to the smoothed series (hourly medians, offset-corrected) of the
tertiary phase. For each candidate t_f the model is linear in (c, A), so a grid of t_f
candidates is one vectorised least-squares solve; the forecast is the t_f of least residual,
and the band holds the candidates whose residual sum of squares stays within the F-test
bound RSS ≤ RSS_min · (1 + F(1, n−3; confidence)/(n−3)) (a profile-likelihood interval).
A forecast is issued only when A > 0 (the law accelerates), the best t_f is in the future
and the band closes inside the candidate grid (the data bound the failure time at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_dist

from alerts.methods.ragged import FloatArray
from geowarn.errors import InvalidInput

N_CANDIDATES = 240


@dataclass(frozen=True)
class Forecast:
    issued: bool
    t_failure: float  # seconds, NaN when not issued
    t_lower: float
    t_upper: float
    n: int  # bins fitted


NOT_ISSUED = Forecast(False, np.nan, np.nan, np.nan, 0)


def forecast_failure_time(t: FloatArray, x: FloatArray, now: float, confidence: float = 0.95,
                          horizon_factor: float = 4.0) -> Forecast:
    """Fit x(t) = c − A·ln(t_f − t) over the finite samples (t ≤ now) of one channel.

    Candidates for t_f run from one minute after `now` to `horizon_factor` × the fitted span
    after it (a forecast further out than that is not one the data can make)."""
    if not 0 < confidence < 1:
        raise InvalidInput(f"forecast confidence must be in (0, 1), got {confidence}")
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(x) & (t <= now)
    t, x = t[ok], x[ok]
    n = t.size
    if n < 8:
        return NOT_ISSUED
    span = now - float(t.min())
    if not span > 0:
        return NOT_ISSUED
    cand = now + np.geomspace(60.0, horizon_factor * span, N_CANDIDATES)
    lg = np.log(cand[:, None] - t[None, :])  # (candidates, n)
    lg_c = lg - lg.mean(axis=1, keepdims=True)
    x_c = x - x.mean()
    sxx = (lg_c * lg_c).sum(axis=1)
    a = -(lg_c * x_c).sum(axis=1) / sxx  # x = c − A·ln(t_f − t): slope on ln is −A
    rss = (x_c * x_c).sum() - a * a * sxx
    rss = np.where(a > 0, np.maximum(rss, 0.0), np.inf)
    best = int(np.argmin(rss))
    if not np.isfinite(rss[best]):
        return NOT_ISSUED
    bound = rss[best] * (1.0 + float(f_dist.ppf(confidence, 1, n - 3)) / (n - 3))
    inside = np.flatnonzero(rss <= bound)
    lo, hi = int(inside.min()), int(inside.max())
    # The band must close inside the grid, and be one run (a split band means two minima).
    if hi >= N_CANDIDATES - 1 or inside.size != hi - lo + 1:
        return NOT_ISSUED
    return Forecast(True, float(cand[best]), float(cand[lo]), float(cand[hi]), n)
