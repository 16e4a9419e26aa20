"""Failure-time forecasts: Fukuzono's inverse velocity with an uncertainty band, gated by
established acceleration, and Saito's three-point formula.

Sources (docs/methods.md):
- Fukuzono 1985: acceleration = A·v^α; for α = 2, 1/v falls linearly in time and the zero
  crossing of a straight-line fit is the forecast failure time. Fit only during acceleration,
  report the uncertainty, refresh as data arrive.
- Saito: with times t1 < t2 < t3 at equal displacement steps,
  t_r = (t2² − t1·t3) / (2·t2 − t1 − t3).

What "established" means here (all configurable in ForecastConfig):
1. `detect_acceleration` says every regression window has seen acceleration for `persist`
   consecutive samples up to now (Leinauer et al. 2023 style agreement), and
2. the inverse-velocity line over the last `fit_samples` samples falls significantly:
   slope < 0 with |slope| ≥ `z_slope` standard errors, and r² ≥ `min_r2`, and
3. the forecast failure time lies after now.
Only then is a forecast *issued*; otherwise the fit is still returned for display.

Uncertainty: the zero crossing t_f = −a/b of the fitted line 1/v = a + b·t; its standard
error comes from the fit's covariance by the delta method, and the band is t_f ± q·se with q
the Student-t quantile for the chosen confidence and n − 2 degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alerts.methods.displacement import AccelerationRule, detect_acceleration, savgol_velocity
from alerts.methods.fitting import LineFit, masked_linear_fit
from alerts.methods.ragged import BoolArray, FloatArray
from geowarn.errors import InvalidInput


@dataclass(frozen=True)
class InverseVelocityFit:
    fit: LineFit  # 1/v = intercept + slope·(t − x_ref), t in seconds
    t_failure: FloatArray  # absolute seconds; NaN when the line does not fall
    t_lower: FloatArray
    t_upper: FloatArray
    slope_z: FloatArray  # slope / its standard error (negative when 1/v falls)


def fit_inverse_velocity(times: FloatArray, velocity: FloatArray, mask: BoolArray,
                         confidence: float = 0.95) -> InverseVelocityFit:
    """Straight line through 1/v over the masked samples with v > 0, for every channel."""
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be in (0, 1), got {confidence}")
    v = np.asarray(velocity, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(v > 0, 1.0 / v, np.nan)
    # Unweighted on purpose: weighting by v² or v⁴ (inverse variance of 1/v) leans on the
    # newest, end-of-window Savitzky–Golay velocities, which are the noisiest; on synthetic
    # creep with noise it made the forecast worse.
    f = masked_linear_fit(times, inv, np.asarray(mask) & (v > 0))
    s2 = f.sigma2()
    with np.errstate(invalid="ignore", divide="ignore"):
        var_b = s2 / f.sxx
        var_a = s2 * (1.0 / f.n + f.x_mean ** 2 / f.sxx)
        cov_ab = -f.x_mean * s2 / f.sxx
        tf_rel = np.where(f.slope < 0, -f.intercept / f.slope, np.nan)
        var_tf = (var_a + tf_rel ** 2 * var_b + 2.0 * tf_rel * cov_ab) / f.slope ** 2
        half = f.t_quantile(confidence) * np.sqrt(np.maximum(var_tf, 0.0))
        z = f.slope / np.sqrt(var_b)
    tf = f.x_ref + tf_rel
    return InverseVelocityFit(f, tf, tf - half, tf + half, z)


@dataclass(frozen=True)
class ForecastConfig:
    savgol_window: int = 11  # samples; odd
    savgol_polyorder: int = 2
    # Fit only velocities from centred windows: less bias from the off-centre end polynomial
    # but w/2 samples older; on synthetic creep it lost more to the delay than it gained.
    centred_only: bool = False
    acceleration: AccelerationRule = field(default_factory=AccelerationRule)
    fit_samples: int = 48  # at most this many samples back from now
    min_fit_samples: int = 8
    min_r2: float = 0.8
    z_slope: float = 3.0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.savgol_window % 2 == 0:
            raise InvalidInput(f"savgol_window must be odd, got {self.savgol_window}")
        if not 3 <= self.min_fit_samples <= self.fit_samples:
            raise InvalidInput(f"need 3 <= min_fit_samples <= fit_samples: {self}")
        if not 0 <= self.min_r2 <= 1 or not self.z_slope > 0:
            raise InvalidInput(f"need 0 <= min_r2 <= 1 and z_slope > 0: {self}")


@dataclass(frozen=True)
class FailureForecast:
    issued: BoolArray  # (channels,)
    accelerating: BoolArray  # established acceleration at the last sample
    t_failure: FloatArray  # absolute seconds, NaN when not issued
    t_lower: FloatArray
    t_upper: FloatArray
    fit: InverseVelocityFit  # the raw fit, also when not issued


def forecast_failure(times: FloatArray, disp: FloatArray,
                     cfg: ForecastConfig = ForecastConfig()  # noqa: B008 - frozen
                     ) -> FailureForecast:
    """Forecast at the last sample of a regular grid: times (samples,), disp (channels,
    samples), displacement positive in the direction of movement."""
    t = np.asarray(times, dtype=np.float64)
    d = np.atleast_2d(np.asarray(disp, dtype=np.float64))
    if t.ndim != 1 or t.size != d.shape[-1] or t.size < 2:
        raise InvalidInput(f"times {t.shape} must be the (samples,) grid of disp {d.shape}")
    step = np.diff(t)
    if not np.allclose(step, step[0]) or not step[0] > 0:
        raise InvalidInput("forecast_failure needs a regular, increasing time grid")
    v = savgol_velocity(d, float(step[0]), cfg.savgol_window, cfg.savgol_polyorder)
    acc = detect_acceleration(d, cfg.acceleration)
    accelerating = acc.established[..., -1]
    # Fit from where acceleration began: the start of the current agreement run, moved back
    # by the longest regression window (the detector needs that long to see it), capped.
    n = t.size
    run_start = n - _trailing_run(acc.agree)
    start = run_start - max(cfg.acceleration.windows)
    start = np.clip(start, n - cfg.fit_samples, n - cfg.min_fit_samples)
    mask = np.arange(n) >= start[..., None]
    if cfg.centred_only:
        # The last half-window of Savitzky–Golay velocities come from an off-centre
        # polynomial: biased low on a hyperbolic velocity curve, and noisier.
        mask[..., n - cfg.savgol_window // 2:] = False
    ivf = fit_inverse_velocity(t, v, mask, cfg.confidence)
    with np.errstate(invalid="ignore"):
        issued = (accelerating & (ivf.slope_z <= -cfg.z_slope) & (ivf.fit.r2 >= cfg.min_r2)
                  & (ivf.t_failure > t[-1]))
    nan = np.full(issued.shape, np.nan)
    return FailureForecast(issued, accelerating, np.where(issued, ivf.t_failure, nan),
                           np.where(issued, ivf.t_lower, nan),
                           np.where(issued, ivf.t_upper, nan), ivf)


def _trailing_run(flag: BoolArray) -> np.ndarray:
    """Length of the run of True at the end of each row."""
    rev = flag[..., ::-1]
    return np.where(rev.all(axis=-1), flag.shape[-1], (~rev).argmax(axis=-1))


def saito_failure_time(t1: FloatArray | float, t2: FloatArray | float,
                       t3: FloatArray | float) -> FloatArray:
    """t_r = (t2² − t1·t3)/(2·t2 − t1 − t3); NaN where the steps are not shrinking (no
    acceleration, so no failure follows). t1 < t2 < t3 is required (NaN entries skipped)."""
    a, b, c = (np.asarray(x, dtype=np.float64) for x in (t1, t2, t3))
    with np.errstate(invalid="ignore"):
        disorder = (b <= a) | (c <= b)
    if np.any(disorder):
        raise InvalidInput("Saito needs t1 < t2 < t3 (times of equal displacement steps)")
    # Centre on t1: the formula squares epoch-size numbers and would lose precision.
    b0, c0 = b - a, c - a
    den = 2.0 * b0 - c0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, a + b0 * b0 / den, np.nan)


def saito_times(times: FloatArray, disp: FloatArray, s_start: FloatArray | float,
                step: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Times at which each channel first reaches s_start, s_start+step, s_start+2·step
    (linear interpolation on a grid times (samples,)); NaN when not reached."""
    if not step > 0:
        raise InvalidInput(f"Saito displacement step must be > 0, got {step}")
    t = np.asarray(times, dtype=np.float64)
    d = np.atleast_2d(np.asarray(disp, dtype=np.float64))
    s0 = np.broadcast_to(np.asarray(s_start, dtype=np.float64), d.shape[:-1])
    out = []
    for k in range(3):
        level = (s0 + k * step)[..., None]
        with np.errstate(invalid="ignore"):
            reached = d >= level
        i = reached.argmax(axis=-1)
        ok = reached.any(axis=-1) & (i > 0)
        i = np.maximum(i, 1)
        d0 = np.take_along_axis(d, (i - 1)[..., None], -1)[..., 0]
        d1 = np.take_along_axis(d, i[..., None], -1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = (level[..., 0] - d0) / (d1 - d0)
        out.append(np.where(ok, t[i - 1] + frac * (t[i] - t[i - 1]), np.nan))
    return out[0], out[1], out[2]
