"""Water-level rules: station thresholds → level, rate of rise, and time to crossing.

Sources (docs/methods.md): a flood signal is blue when the
level approaches the warning level (警戒水位), yellow at/above it, orange at/above the
guaranteed level (保证水位), red at/above the historical maximum; alternatively ≥5/20/50-year
return periods give yellow/orange/red. Each station has its own threshold set. The approach
margin and rate-of-rise limits have no national number: they are per-station settings and
the defaults here are ours. The crossing forecast fits the slope over the last N points and,
when rising, t_cross = now + (H_threshold − H_now)/slope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.fitting import LineFit, masked_linear_fit
from alerts.methods.levels import LEVEL_DTYPE, LevelArray, classify
from alerts.methods.ragged import BoolArray, FloatArray
from geowarn.errors import InvalidInput


@dataclass(frozen=True)
class StationThresholds:
    """Per-channel levels in metres (NaN = not defined for that station)."""

    warning: FloatArray
    guaranteed: FloatArray
    historical_max: FloatArray
    approach_margin: FloatArray  # blue from warning − margin; 0.5 m is only a default

    def __post_init__(self) -> None:
        shapes = {np.shape(a) for a in (self.warning, self.guaranteed, self.historical_max,
                                        self.approach_margin)}
        if len(shapes) != 1:
            raise InvalidInput(f"station threshold arrays differ in shape: {shapes}")
        if np.any(np.asarray(self.approach_margin) < 0):
            raise InvalidInput("approach margin must be >= 0")

    @classmethod
    def build(cls, warning: FloatArray, guaranteed: FloatArray, historical_max: FloatArray,
              approach_margin: FloatArray | float = 0.5) -> StationThresholds:
        w = np.asarray(warning, dtype=np.float64)
        return cls(w, np.asarray(guaranteed, dtype=np.float64),
                   np.asarray(historical_max, dtype=np.float64),
                   np.broadcast_to(np.asarray(approach_margin, dtype=np.float64), w.shape))

    def table(self) -> FloatArray:
        """(channels, 4) blue/yellow/orange/red thresholds; classify() checks the order."""
        return np.stack([self.warning - self.approach_margin, self.warning, self.guaranteed,
                         self.historical_max], axis=-1)


RETURN_PERIOD_YEARS = (np.nan, 5.0, 20.0, 50.0)  # blue has no return-period criterion


def stage_levels(h_now: FloatArray, th: StationThresholds,
                 return_period_years: FloatArray | None = None) -> LevelArray:
    """Level per channel from the current stage (and, if given, the flow's return period);
    any condition sets the level."""
    lv = classify(h_now, th.table())
    if return_period_years is not None:
        lv = np.maximum(lv, classify(return_period_years, RETURN_PERIOD_YEARS))
    return lv.astype(LEVEL_DTYPE)


def last_n_mask(values: FloatArray, n: int) -> BoolArray:
    """The last n finite samples of each row."""
    if n < 3:
        raise InvalidInput(f"need at least 3 points for a slope, got {n}")
    finite = np.isfinite(values)
    from_end = np.cumsum(finite[..., ::-1], axis=-1)[..., ::-1]
    return finite & (from_end <= n)


def rise_rate(times: FloatArray, h: FloatArray, n_points: int) -> LineFit:
    """Least-squares slope (m/s) over each channel's last n_points finite readings; times is
    (samples,) or (channels, samples), NaN readings are skipped."""
    h = np.asarray(h, dtype=np.float64)
    return masked_linear_fit(times, h, last_n_mask(h, n_points))


def time_to_crossing(now: FloatArray | float, h_now: FloatArray, slope: FloatArray,
                     threshold: FloatArray) -> FloatArray:
    """Absolute time the rising stage reaches `threshold`; NaN when not rising or already
    at/above it (a crossing that already happened is not a forecast)."""
    h = np.asarray(h_now, dtype=np.float64)
    thr = np.asarray(threshold, dtype=np.float64)
    s = np.asarray(slope, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dt = (thr - h) / s
        return np.where((s > 0) & (h < thr), np.asarray(now, dtype=np.float64) + dt, np.nan)


@dataclass(frozen=True)
class WaterLevelResult:
    level: LevelArray
    h_now: FloatArray
    rate: FloatArray  # m/s
    rate_level: LevelArray
    t_cross: FloatArray  # (channels, 3): warning, guaranteed, historical max


def evaluate(times: FloatArray, h: FloatArray, now: FloatArray | float, th: StationThresholds,
             n_points: int = 6, rate_thresholds: FloatArray | None = None) -> WaterLevelResult:
    """Stage level, rate of rise (and its level from per-station (4,) or (channels, 4) m/s
    thresholds when given) and crossing times, for every channel."""
    h = np.asarray(h, dtype=np.float64)
    finite = np.isfinite(h)
    last = np.where(finite.any(-1), h.shape[-1] - 1 - finite[..., ::-1].argmax(-1), 0)
    h_now = np.where(finite.any(-1), np.take_along_axis(h, last[..., None], -1)[..., 0],
                     np.nan)
    fit = rise_rate(times, h, n_points)
    rate_level = (classify(fit.slope, rate_thresholds) if rate_thresholds is not None
                  else np.zeros(h_now.shape, dtype=LEVEL_DTYPE))
    t_cross = np.stack([time_to_crossing(now, h_now, fit.slope, thr)
                        for thr in (th.warning, th.guaranteed, th.historical_max)], axis=-1)
    return WaterLevelResult(stage_levels(h_now, th), h_now, fit.slope, rate_level, t_cross)
