"""Failure-time forecast by the Voight law for any α, fitted to displacement directly, with
α = 2 (Fukuzono's inverse velocity, methods/inverse_velocity.py) as the null model.

Voight (1988, Nature 332:125; 1989, Science 243:200) generalised Fukuzono (1985): the rate
law d²x/dt² = A·v^α gives 1/v = (A(α−1))^(1/(α−1)) · (t_f − t)^(1/(α−1)); integrated,

    x(t) = c − K·g_q(t_f − t),  g_q(s) = (s^q − 1)/q,  q = (α − 2)/(α − 1)  (g_0 = ln s)

(Box–Cox form, continuous through α = 2). For fixed (t_f, α) the model is linear in (c, K)
(and b, with an optional steady-creep term b·t), so a grid of t_f × α candidates is one
vectorised least-squares solve. Intrieri et al. (2019, Earth-Sci. Rev. 193:333) review why
α ≠ 2 matters in practice (fixed α = 2 biases the forecast by up to the remaining time).

Choices, each against over-fitting noise (bench/forecast_bound.py: freeing α costs ~3× in
precision, so α stays 2 unless the data demand another):
- α is freed only when an F-test rejects α = 2 at `alpha_p` (0.1 %);
- the creep term is kept only when it predicts the newest `holdout_h` hours (fitted without
  them) better than the model without it (a held-out check) AND an F-test at `alpha_p` finds
  it significant in-sample (the held-out check alone let it absorb α > 2);
- samples with residuals beyond 5 robust sigmas are dropped once and the fit redone;
- the forecast is the posterior median of t_f (flat prior in t_f over the grid, σ and the
  linear parameters profiled out, α marginalised over its grid when free) and the band its
  central `confidence` interval; nothing is issued when the band does not close inside the
  grid (the data do not bound the failure time) or the best fit does not accelerate (K ≤ 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_dist

from alerts.methods.inverse_velocity import Forecast
from alerts.methods.ragged import FloatArray
from geowarn.errors import InvalidInput

N_CANDIDATES = 160
ALPHAS = np.round(np.arange(1.4, 2.81, 0.1), 2)  # Voight 1988: α ≈ 1.5–2.2 in practice
I2 = int(np.argmin(np.abs(ALPHAS - 2.0)))


@dataclass(frozen=True)
class VoightFit:
    forecast: Forecast
    alpha: float  # of the best candidate (2.0 when α was not freed)
    alpha_free: bool
    creep: bool
    dropped: int  # outliers dropped
    alpha_f: float  # F statistic of freeing α (1 extra parameter) in the final model


NO_FIT = VoightFit(Forecast(False, np.nan, np.nan, np.nan, 0), np.nan, False, False, 0,
                   np.nan)


@dataclass(frozen=True)
class _Grid:
    cand: FloatArray  # (C,) absolute seconds
    rss: FloatArray  # (A, C); inf where K <= 0
    n: int
    k_lin: int
    t: FloatArray  # the fitted samples
    x: FloatArray
    span: float
    now: float


def _basis(t: FloatArray, now: float, span: float, creep: bool) -> FloatArray:
    tau = (t - now) / span
    return np.stack([np.ones_like(tau), tau] if creep else [np.ones_like(tau)], axis=1)


def _g(cand: FloatArray, t: FloatArray, span: float, alphas: FloatArray) -> FloatArray:
    ls = np.log((cand[:, None] - t[None, :]) / span)  # (C, n), scaled so powers stay tame
    q = ((alphas - 2.0) / (alphas - 1.0))[:, None, None]
    safe_q = np.where(q == 0, 1.0, q)
    return np.where(q == 0, ls[None], np.expm1(q * ls[None]) / safe_q)  # (A, C, n)


def _fit_grid(t: FloatArray, x: FloatArray, now: float, creep: bool, alphas: FloatArray,
              horizon_factor: float, cand: FloatArray | None = None) -> _Grid:
    span = now - float(t.min())
    if cand is None:
        cand = now + np.geomspace(60.0, horizon_factor * span, N_CANDIDATES)
    z = _basis(t, now, span, creep)
    qz, _ = np.linalg.qr(z)  # orthonormal basis of the nuisance columns
    x_r = x - qz @ (qz.T @ x)
    g = _g(cand, t, span, alphas)
    g_r = g - (g @ qz) @ qz.T
    sgg = np.einsum("acn,acn->ac", g_r, g_r)
    sgx = g_r @ x_r
    beta = sgx / sgg  # coefficient on g: −K
    rss = np.maximum(x_r @ x_r - sgx * beta, 0.0)
    rss = np.where(beta < 0, rss, np.inf)  # K > 0: the law accelerates
    return _Grid(cand, rss, t.size, z.shape[1], t, x, span, now)


def _predict(gr: _Grid, a: int, c: int, t: FloatArray) -> FloatArray:
    """The candidate (α index a, t_f index c) refitted on the grid's samples, at times t."""
    def design(tt: FloatArray) -> FloatArray:
        g = _g(gr.cand[c:c + 1], tt, gr.span, ALPHAS[a:a + 1])[0, 0]
        return np.column_stack([_basis(tt, gr.now, gr.span, gr.k_lin == 2), g])
    coef = np.linalg.lstsq(design(gr.t), gr.x, rcond=None)[0]
    return np.asarray(design(t) @ coef)


def _posterior(gr: _Grid, rows: slice, confidence: float, closed: bool = True) -> Forecast:
    rss = gr.rss[rows]
    dof = gr.n - gr.k_lin - 3
    if dof < 3 or not np.isfinite(rss).any():
        return NO_FIT.forecast
    with np.errstate(divide="ignore"):
        ll = -0.5 * dof * np.log(rss / rss[np.isfinite(rss)].min())
    w = np.exp(ll).sum(axis=0)  # α marginalised over its grid (flat prior)
    dt = np.gradient(gr.cand)  # flat prior in t_f
    p = w * dt
    if not p.sum() > 0:
        return NO_FIT.forecast
    cdf = np.cumsum(p) / p.sum()
    lo_q, hi_q = (1 - confidence) / 2, (1 + confidence) / 2
    lo, med, hi = np.interp([lo_q, 0.5, hi_q], cdf, gr.cand)
    # The band must close well inside the grid: the data bound the failure time at all.
    if closed and cdf[-gr.cand.size // 20] < hi_q:
        return NO_FIT.forecast
    return Forecast(True, float(med), float(lo), float(hi), gr.n)


def _best(gr: _Grid, rows: slice) -> tuple[int, int, float]:
    rss = gr.rss[rows]
    a, c = np.unravel_index(int(np.argmin(rss)), rss.shape)
    return int(a) + (rows.start or 0), int(c), float(rss[a, c])


def _significant(rss0: float, rss1: float, dof: int, p: float) -> bool:
    """F-test (one extra parameter) that rss1 improves on rss0 at level p."""
    if not np.isfinite(rss1) or dof < 3 or not rss1 > 0:
        return False
    return not np.isfinite(rss0) or (rss0 - rss1) / (rss1 / dof) > float(
        f_dist.ppf(1 - p, 1, dof))


def _alpha_free(gr: _Grid, alpha_p: float) -> bool:
    return _significant(float(gr.rss[I2].min()), float(gr.rss.min()), gr.n - gr.k_lin - 3,
                        alpha_p)


def _alpha_f(gr: _Grid) -> float:
    """The F statistic of freeing α: how far α = 2 is ruled out (inf: it cannot fit)."""
    rss2, rss = float(gr.rss[I2].min()), float(gr.rss.min())
    dof = gr.n - gr.k_lin - 3
    if not np.isfinite(rss) or not rss > 0 or dof < 1:
        return np.nan
    return (rss2 - rss) / (rss / dof) if np.isfinite(rss2) else np.inf


def _fine_alphas(gr: _Grid, step: float = 0.01) -> FloatArray:
    """0.01-spaced α over the coarse α whose best fit is not ruled out (profile likelihood
    within e^-9 of the best), widened by one coarse step each side."""
    best = gr.rss.min(axis=1)
    dof = gr.n - gr.k_lin - 3
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.flatnonzero(0.5 * dof * np.log(best / best.min()) <= 9.0)
    lo = max(float(ALPHAS[ok.min()]) - 0.1, float(ALPHAS[0]))
    hi = min(float(ALPHAS[ok.max()]) + 0.1, float(ALPHAS[-1]))
    return np.round(np.arange(lo, hi + step / 2, step), 2)


def _fit_model(t: FloatArray, x: FloatArray, now: float, creep: bool, alpha_p: float,
               horizon_factor: float) -> tuple[_Grid, slice]:
    gr = _fit_grid(t, x, now, creep, ALPHAS, horizon_factor)
    rows = slice(None) if _alpha_free(gr, alpha_p) else slice(I2, I2 + 1)
    return gr, rows


def _holdout_error(t: FloatArray, x: FloatArray, now: float, creep: bool, alpha_p: float,
                   horizon_factor: float, holdout_s: float) -> float:
    """Mean squared error predicting the newest `holdout_s` from a fit without them."""
    cut = now - holdout_s
    old = t <= cut
    if old.sum() < 12 or (~old).sum() < 3:
        return np.inf
    gr, rows = _fit_model(t[old], x[old], cut, creep, alpha_p, horizon_factor)
    a, c, rss = _best(gr, rows)
    if not np.isfinite(rss) or gr.cand[c] <= t.max():
        return np.inf  # "fails" before the held-out data: a bad prediction
    return float(np.mean((_predict(gr, a, c, t[~old]) - x[~old]) ** 2))


def alpha_f_screen(t: FloatArray, x: FloatArray, now: float, horizon_factor: float = 4.0
                   ) -> float:
    """The F statistic of freeing α on the first grid fit_voight solves (no creep term, no
    outlier pass): one of its ~8 grid solves, a cheap look before the whole fit."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(x) & (t <= now)
    t, x = t[ok], x[ok]
    if t.size < 10 or not now - float(t.min()) > 0:
        return np.nan
    return _alpha_f(_fit_grid(t, x, now, False, ALPHAS, horizon_factor))


def fit_voight(t: FloatArray, x: FloatArray, now: float, confidence: float = 0.95,
               alpha_p: float = 0.001, holdout_h: float = 24.0,
               horizon_factor: float = 4.0) -> VoightFit:
    """Forecast t_f from the finite samples (t ≤ now, seconds) of one channel's smoothed,
    offset-corrected displacement (positive in the direction of movement)."""
    if not 0 < confidence < 1 or not 0 < alpha_p < 1:
        raise InvalidInput(f"need confidence and alpha_p in (0, 1): {confidence}, {alpha_p}")
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(x) & (t <= now)
    t, x = t[ok], x[ok]
    if t.size < 10 or not now - float(t.min()) > 0:
        return NO_FIT
    dropped = 0
    for second_pass in (False, True):  # outliers dropped once, then the final fit
        errs = [_holdout_error(t, x, now, cr, alpha_p, horizon_factor, holdout_h * 3600.0)
                for cr in (False, True)]
        gr, rows = _fit_model(t, x, now, False, alpha_p, horizon_factor)
        if errs[1] < errs[0]:  # and the creep term must be significant in-sample too
            gc, rc = _fit_model(t, x, now, True, alpha_p, horizon_factor)
            if _significant(_best(gr, rows)[2], _best(gc, rc)[2], gc.n - 5, alpha_p):
                gr, rows = gc, rc
        creep = gr.k_lin == 2
        a, c, rss = _best(gr, rows)
        if not np.isfinite(rss):
            return NO_FIT
        if second_pass:
            break
        res = x - _predict(gr, a, c, t)
        mad = 1.4826 * float(np.median(np.abs(res - np.median(res))))
        out = np.abs(res) > 5.0 * mad if mad > 0 else np.zeros(t.size, bool)
        if not out.any():
            break
        t, x, dropped = t[~out], x[~out], int(out.sum())
    fc = _posterior(gr, rows, confidence)
    f_stat = _alpha_f(gr)
    alphas = ALPHAS[rows]
    if fc.issued and rows.start is None:
        # α free: the coarse α grid (0.1) biases t_f by up to ~0.3 of the remaining time
        # where the data pin α down well (crack meters); redo the t_f grid on 0.01 steps
        # over the α the data allow.
        alphas = _fine_alphas(gr)
        gr = _fit_grid(t, x, now, creep, alphas, horizon_factor)
        fc = _posterior(gr, slice(None), confidence)
    if fc.issued:  # refine: a fine linear grid over the coarse band, its resolution
        pad = 0.5 * (fc.t_upper - fc.t_lower) + 60.0
        fine = np.linspace(max(fc.t_lower - pad, now + 30.0), fc.t_upper + pad, 80)
        gf = _fit_grid(t, x, now, creep, alphas, horizon_factor, fine)
        fc = _posterior(gf, slice(None), confidence, closed=False)
        a = int(np.unravel_index(int(np.argmin(gf.rss)), gf.rss.shape)[0])
        alpha = float(alphas[a])
    else:
        alpha = float(ALPHAS[a])
    if not (fc.issued and fc.t_failure > now):
        fc = NO_FIT.forecast
    return VoightFit(fc, alpha, rows.start is None, creep, dropped, f_stat)
