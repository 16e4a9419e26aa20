"""Per-row least squares over masked samples, shared by the displacement, failure-time and
water-level rules. One call fits every channel; rows with < 3 usable points give NaN."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from alerts.methods.ragged import BoolArray, FloatArray


@dataclass(frozen=True)
class LineFit:
    """y = intercept + slope·(x − x_ref) per row, with the pieces needed for uncertainty."""

    slope: FloatArray
    intercept: FloatArray
    n: FloatArray
    x_mean: FloatArray  # relative to x_ref
    sxx: FloatArray
    rss: FloatArray
    r2: FloatArray
    x_ref: FloatArray

    def sigma2(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.rss / (self.n - 2.0)

    def slope_stderr(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.sigma2() / self.sxx)

    def t_quantile(self, confidence: float) -> FloatArray:
        df = np.where(self.n > 2, self.n - 2.0, np.nan)
        return np.asarray(stats.t.ppf(0.5 + confidence / 2.0, df))


def masked_linear_fit(x: FloatArray, y: FloatArray, mask: BoolArray,
                      x_ref: FloatArray | float | None = None,
                      weights: FloatArray | None = None) -> LineFit:
    """Fit each row of y (rows, samples) against x (samples,) or (rows, samples) using only
    the masked finite samples. x is shifted by x_ref (default: each row's last masked x) so
    epoch-second times do not cost precision. `weights` are relative inverse variances;
    they are rescaled to mean 1 over the used samples, so the residual variance keeps
    n − 2 degrees of freedom."""
    y = np.asarray(y, dtype=np.float64)
    xb = np.broadcast_to(np.asarray(x, dtype=np.float64), y.shape)
    m = np.asarray(mask, dtype=bool) & np.isfinite(y) & np.isfinite(xb)
    if x_ref is None:
        ref = np.where(m, xb, -np.inf).max(axis=-1)
        ref = np.where(np.isfinite(ref), ref, 0.0)
    else:
        ref = np.broadcast_to(np.asarray(x_ref, dtype=np.float64), y.shape[:-1])
    xs = xb - ref[..., None]
    n = m.sum(axis=-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if weights is None:
            w = m.astype(np.float64)
        else:
            w = np.where(m, np.broadcast_to(np.asarray(weights, dtype=np.float64), y.shape), 0)
            m &= np.isfinite(w) & (w > 0)
            w = np.where(m, w, 0.0)
            n = m.sum(axis=-1).astype(np.float64)
            w = w * (n / w.sum(-1))[..., None]
        xm = (w * np.where(m, xs, 0.0)).sum(-1) / n
        ym = (w * np.where(m, y, 0.0)).sum(-1) / n
        dx = np.where(m, xs - xm[..., None], 0.0)
        dy = np.where(m, y - ym[..., None], 0.0)
        sxx = (w * dx * dx).sum(-1)
        syy = (w * dy * dy).sum(-1)
        b = (w * dx * dy).sum(-1) / sxx
        a = ym - b * xm
        rss = np.maximum(syy - b * b * sxx, 0.0)
        r2 = np.where(syy > 0, 1.0 - rss / syy, np.nan)
    bad = (n < 3) | ~(sxx > 0)

    def nan_if_bad(v: FloatArray) -> FloatArray:
        return np.where(bad, np.nan, v)

    return LineFit(nan_if_bad(b), nan_if_bad(a), n, nan_if_bad(xm), nan_if_bad(sxx),
                   nan_if_bad(rss), nan_if_bad(r2), np.asarray(ref, dtype=np.float64))
