"""Displacement rules on regular grids: Savitzky–Golay and rolling-regression velocity,
acceleration onset (used by failure_time.forecast_failure, which the engine does not run)
and the improved tangent angle.

Everything works on regular grids shaped (channels, samples) so one call covers every
channel. The engine judges displacement on its hourly history instead
(alerts/engine/displacement.py, alerts/methods/velocity.py). Displacement
is taken positive in the direction of movement (flip the sign of a sensor whose readings
fall as the slope moves).

Methods and sources (docs/methods.md):
- Velocity: Savitzky–Golay derivative (scipy.signal.savgol_filter, deriv=1), which follows
  the trend and shows acceleration onset earlier than a moving average (Sharifi et al. 2021,
  2022, NHESS 22:411); or rolling least-squares over a window with its standard error.
- Acceleration onset (after Leinauer et al. 2023): velocity from regressions over several
  window lengths; a window "sees" acceleration when its current velocity exceeds the one of
  the window just before by more than `z` combined standard errors; onset is declared only
  when *all* window lengths agree, and it is *established* once they have agreed for
  `persist` consecutive samples. z=2 and persist=3 are our defaults, not published numbers.
- Improved tangent angle (Xu et al. 2009, 地质通报 28(4)): α = arctan(v / v̄), v̄ the mean
  rate over a chosen constant-velocity reference window; ≈45° blue, (45°, 80°) yellow,
  [80°, 85°) orange, ≥85° red. The reference uses consecutive-sample velocities; we use the
  smoothed velocity, since raw differences of noisy GNSS swing the angle by tens of degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from alerts.methods.levels import LevelArray, classify
from alerts.methods.ragged import BoolArray, FloatArray
from geowarn.errors import InvalidInput


def savgol_velocity(disp: FloatArray, step_s: float, window: int, polyorder: int = 2
                    ) -> FloatArray:
    """Velocity (units per second) along the last axis by a Savitzky–Golay derivative."""
    if window <= polyorder or window < 3:
        raise InvalidInput(f"savgol window {window} must exceed polyorder {polyorder} and be "
                           ">= 3")
    d = np.asarray(disp, dtype=np.float64)
    if d.shape[-1] < window:
        raise InvalidInput(f"series of {d.shape[-1]} samples is shorter than the savgol "
                           f"window {window}")
    return np.asarray(savgol_filter(d, window, polyorder, deriv=1, delta=step_s, axis=-1))


@dataclass(frozen=True)
class Regression:
    """Rolling least-squares slope (units per sample) ending at each sample, and its
    standard error; NaN until a full window of finite samples is available."""

    slope: FloatArray
    stderr: FloatArray


def rolling_regression(y: FloatArray, window: int) -> Regression:
    """Slope of y against sample index over the `window` samples ending at each sample.

    Closed form from prefix sums, so the cost does not depend on the window length.
    """
    if window < 3:
        raise InvalidInput(f"regression window must be >= 3 samples, got {window}")
    y = np.asarray(y, dtype=np.float64)
    m = y.shape[-1]
    slope = np.full(y.shape, np.nan)
    se = np.full(y.shape, np.nan)
    if m < window:
        return Regression(slope, se)
    nan = np.isnan(y)
    # Centre each row first: prefix sums of raw positions would cancel catastrophically.
    count = np.maximum((~nan).sum(axis=-1, keepdims=True), 1)
    mean = np.where(nan, 0.0, y).sum(axis=-1, keepdims=True) / count
    yc = np.where(nan, 0.0, y - mean)
    j = np.arange(m, dtype=np.float64)

    def prefix(a: FloatArray) -> FloatArray:
        z = np.zeros(a.shape[:-1] + (1,))
        c = np.concatenate([z, np.cumsum(a, axis=-1)], axis=-1)
        return c[..., window:] - c[..., :-window]

    s_y, s_jy, s_yy = prefix(yc), prefix(j * yc), prefix(yc * yc)
    holes = prefix(nan.astype(np.float64)) > 0
    t = j[window - 1:]
    w = float(window)
    sxx = w * (w * w - 1.0) / 12.0
    sxy = s_jy - (t - (w - 1.0) / 2.0) * s_y
    b = sxy / sxx
    rss = np.maximum(s_yy - s_y * s_y / w - b * b * sxx, 0.0)
    slope[..., window - 1:] = np.where(holes, np.nan, b)
    se[..., window - 1:] = np.where(holes, np.nan, np.sqrt(rss / (w - 2.0) / sxx))
    return Regression(slope, se)


@dataclass(frozen=True)
class AccelerationRule:
    """When acceleration counts as established (see module docstring)."""

    windows: tuple[int, ...] = (6, 12, 24)  # samples of the regular grid
    z: float = 2.0
    persist: int = 3

    def __post_init__(self) -> None:
        if not self.windows or min(self.windows) < 3:
            raise InvalidInput(f"acceleration windows must be >= 3 samples: {self.windows}")
        if not self.z > 0 or self.persist < 1:
            raise InvalidInput(f"acceleration rule needs z > 0 and persist >= 1: {self}")


@dataclass(frozen=True)
class Acceleration:
    agree: BoolArray  # (channels, samples): every window sees acceleration at this sample
    established: BoolArray  # agreed for `persist` consecutive samples up to this one
    onset: np.ndarray  # (channels,) first sample where established, -1 when never


def detect_acceleration(disp: FloatArray, rule: AccelerationRule) -> Acceleration:
    """Acceleration per sample from displacement on a regular grid (see AccelerationRule)."""
    d = np.asarray(disp, dtype=np.float64)
    agree = np.ones(d.shape, dtype=bool)
    for w in rule.windows:  # a few window lengths; each is one vector op over all channels
        reg = rolling_regression(d, w)
        prev_v = np.full(d.shape, np.nan)
        prev_se = np.full(d.shape, np.nan)
        prev_v[..., w:] = reg.slope[..., :-w]
        prev_se[..., w:] = reg.stderr[..., :-w]
        with np.errstate(invalid="ignore"):
            sees = (reg.slope > 0) & (
                reg.slope - prev_v > rule.z * np.hypot(reg.stderr, prev_se))
        agree &= sees
    run = _run_length(agree)
    established = run >= rule.persist
    has = established.any(axis=-1)
    onset = np.where(has, established.argmax(axis=-1), -1)
    return Acceleration(agree, established, onset)


def _run_length(flag: BoolArray) -> np.ndarray:
    """Length of the run of True ending at each position along the last axis."""
    idx = np.arange(flag.shape[-1])
    last_false = np.maximum.accumulate(np.where(flag, -1, idx), axis=-1)
    return np.where(flag, idx - last_false, 0)


def tangent_angle(velocity: FloatArray, v_ref: FloatArray | float) -> FloatArray:
    """α = arctan(v / v̄) in degrees; NaN where v̄ is not a positive rate."""
    v = np.asarray(velocity, dtype=np.float64)
    ref = np.asarray(v_ref, dtype=np.float64)
    if ref.ndim == 1 and v.ndim == 2:
        ref = ref[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ref > 0, np.degrees(np.arctan(v / ref)), np.nan)


@dataclass(frozen=True)
class TangentAngleConfig:
    """Angle bands (degrees). Xu et al. 2009 put constant velocity at "α ≈ 45°" (blue) and
    yellow at 45° < α < 80°. The "≈" needs a tolerance or steady creep flickers between blue
    and yellow on rounding alone: the default blue band 40–50° is our choice (configurable;
    set yellow_above_deg=45 for the literal table)."""

    blue_from_deg: float = 40.0
    yellow_above_deg: float = 50.0
    orange_from_deg: float = 80.0
    red_from_deg: float = 85.0

    def __post_init__(self) -> None:
        t = (self.blue_from_deg, self.yellow_above_deg, self.orange_from_deg, self.red_from_deg)
        if not all(0 <= a < 90 for a in t) or list(t) != sorted(t):
            raise InvalidInput(f"tangent angle bands must rise within [0, 90): {t}")


def tangent_levels(angle_deg: FloatArray, cfg: TangentAngleConfig = TangentAngleConfig()  # noqa: B008
                   ) -> LevelArray:
    """Level per angle; yellow needs α > yellow_above_deg, the others α ≥ their edge."""
    thr = (cfg.blue_from_deg, float(np.nextafter(cfg.yellow_above_deg, np.inf)),
           cfg.orange_from_deg, cfg.red_from_deg)
    return classify(angle_deg, thr)
