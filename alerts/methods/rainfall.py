"""Rainfall rules: window accumulations, daily and multi-day totals, I–D thresholds,
effective antecedent rainfall, and the window-threshold level table.

Input is interval rain: each sample is the amount that fell in the interval *ending* at its
timestamp (a tipping-bucket count or a logger's period total), so a window of length w at
time t holds the samples with time in (t − w, t]. A NaN sample is missing data and makes
every total that covers it NaN (a window with a hole must not look dry).

Sources (docs/methods.md):
- I–D thresholds I = a·D^(−b): Caine 1980 (a=14.82, b=0.39), Aleotti 2004 Piedmont (a=19,
  b=0.50), Guzzetti et al. 2008 global (a=2.20, b=0.44, *unconfirmed*).
- Effective antecedent rainfall R_a = Σ k^i r_i; k = 0.79/day over 3 days from a Fujian study
  (*unconfirmed*, configurable).
- Window table: the county example in the reference (1/3/6/24 h) is only the default.
- Daily totals: Chinese hydrology splits days at 08:00 local time; a rain day is labelled by
  the date on which it starts (08:00 D to 08:00 D+1 is day D). Both are configurable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from alerts.methods.levels import LEVEL_DTYPE, LevelArray, check_thresholds, classify
from alerts.methods.ragged import FloatArray, IntArray, Ragged, search_per_channel
from geowarn.errors import InvalidInput

HOUR = 3600.0
DAY = 86400.0
STANDARD_WINDOWS_H: tuple[float, ...] = (1, 3, 6, 12, 24, 72)


def _cumsums(r: Ragged) -> tuple[FloatArray, IntArray]:
    """Global prefix sums of rain (NaN as 0) and of NaN counts, with a leading 0."""
    nan = np.isnan(r.values)
    c = np.concatenate([[0.0], np.cumsum(np.where(nan, 0.0, r.values))])
    n = np.concatenate([[0], np.cumsum(nan, dtype=np.int64)])
    return c, n


def _check_windows(windows_s: FloatArray) -> None:
    if windows_s.ndim != 1 or windows_s.size == 0 or np.any(~(windows_s > 0)):
        raise InvalidInput(f"windows must be positive durations, got {windows_s.tolist()}")


def window_accumulations(
    r: Ragged, at: FloatArray | float, windows_h: tuple[float, ...] = STANDARD_WINDOWS_H
) -> FloatArray:
    """Rain in (at − w, at] for each channel and window: shape (channels, len(windows_h))."""
    w = np.asarray(windows_h, dtype=np.float64) * HOUR
    _check_windows(w)
    c, n = _cumsums(r)
    at_arr = np.broadcast_to(np.asarray(at, dtype=np.float64), (r.n_channels,))
    hi = search_per_channel(r, at_arr, "right", reach=float(w.max()))
    out = np.empty((r.n_channels, w.size))
    for j, wj in enumerate(w):  # a handful of windows, each one vector op over all channels
        lo = search_per_channel(r, at_arr - wj, "right", reach=float(w.max()))
        out[:, j] = np.where(n[hi] - n[lo] > 0, np.nan, c[hi] - c[lo])
    return out


def rolling_accumulation(r: Ragged, window_h: float) -> FloatArray:
    """For every sample i, the rain in (t_i − w, t_i] of its own channel (packed like r)."""
    w = float(window_h) * HOUR
    _check_windows(np.array([w]))
    if r.times.size == 0:
        return np.zeros(0)
    c, n = _cumsums(r)
    t0 = float(r.times.min())
    span = float(r.times.max()) - t0 + w + 1.0
    key = (r.times - t0) + r.channel_of_sample() * span
    lo = np.searchsorted(key, key - w, side="right")
    hi = np.arange(1, r.times.size + 1)
    return np.where(n[hi] - n[lo] > 0, np.nan, c[hi] - c[lo])


@dataclass(frozen=True)
class DayConvention:
    """How rain is split into days: local offset from UTC and the hour a rain day starts."""

    utc_offset_h: float = 8.0
    day_start_h: float = 8.0

    def __post_init__(self) -> None:
        if not -14 <= self.utc_offset_h <= 14:
            raise InvalidInput(f"utc_offset_h {self.utc_offset_h} outside [-14, 14]")
        if not 0 <= self.day_start_h < 24:
            raise InvalidInput(f"day_start_h {self.day_start_h} outside [0, 24)")

    def day_index(self, times: FloatArray) -> IntArray:
        """Rain-day number (days since 1970-01-01 local) of interval rain ending at `times`.

        Intervals are (start, end], so rain stamped exactly at the day boundary belongs to
        the day that ends there: hence ceil(...) − 1 rather than floor.
        """
        x = (times + (self.utc_offset_h - self.day_start_h) * HOUR) / DAY
        return (np.ceil(x) - 1).astype(np.int64)


@dataclass(frozen=True)
class DailyTotals:
    """Daily rain per channel; column j is rain day `first_day + j` (days since 1970-01-01)."""

    first_day: int
    totals: FloatArray

    def day_labels(self) -> np.ndarray:
        return np.datetime64("1970-01-01", "D") + self.first_day + np.arange(
            self.totals.shape[1])


def daily_totals(
    r: Ragged,
    convention: DayConvention = DayConvention(),  # noqa: B008 - frozen, so sharing is safe
    first_day: int | None = None,
    n_days: int | None = None,
) -> DailyTotals:
    """Daily totals (channels, days). A day with no sample is 0 (no report = no tip);
    a day holding a NaN sample is NaN. The day range defaults to the data's span."""
    day = convention.day_index(r.times)
    if first_day is None:
        first_day = int(day.min()) if day.size else 0
    if n_days is None:
        n_days = int(day.max()) - first_day + 1 if day.size else 0
    if n_days < 0:
        raise InvalidInput(f"n_days must be >= 0, got {n_days}")
    rel = day - first_day
    keep = (rel >= 0) & (rel < n_days)
    flat = r.channel_of_sample()[keep] * n_days + rel[keep]
    size = r.n_channels * n_days
    vals = r.values[keep]
    nan = np.isnan(vals)
    tot = np.bincount(flat, weights=np.where(nan, 0.0, vals), minlength=size)
    bad = np.bincount(flat, weights=nan.astype(np.float64), minlength=size) > 0
    return DailyTotals(first_day, np.where(bad, np.nan, tot).reshape(r.n_channels, n_days))


def rolling_sum(x: FloatArray, n: int, *, include_current: bool = True) -> FloatArray:
    """Trailing n-sample sums along the last axis; NaN where the window is incomplete or
    holds a NaN. include_current=False sums the n samples *before* each one."""
    if n < 1:
        raise InvalidInput(f"window length must be >= 1 sample, got {n}")
    x = np.asarray(x, dtype=np.float64)
    nan = np.isnan(x)
    c = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(np.where(nan, 0, x), -1)], -1)
    k = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(nan, -1)], -1)
    out = np.full(x.shape, np.nan)
    m = x.shape[-1]
    if n <= m:
        s = c[..., n:] - c[..., :-n]
        holes = (k[..., n:] - k[..., :-n]) > 0
        out[..., n - 1:] = np.where(holes, np.nan, s)
    if include_current:
        return out
    shifted = np.full(x.shape, np.nan)
    shifted[..., 1:] = out[..., :-1]
    return shifted


def multi_day_totals(
    daily: FloatArray, days: int, *, include_today: bool = True
) -> FloatArray:
    """n-day totals ending on each day (include_today) or on the day before (excluded)."""
    return rolling_sum(daily, days, include_current=include_today)


@dataclass(frozen=True)
class IDThreshold:
    """Intensity–duration threshold I = a·D^(−b), I in mm/h, D in hours."""

    name: str
    a: float
    b: float
    d_min_h: float
    d_max_h: float
    confirmed: bool = True

    def __post_init__(self) -> None:
        if not (self.a > 0 and self.b >= 0 and 0 < self.d_min_h < self.d_max_h):
            raise InvalidInput(f"I–D threshold {self.name}: need a>0, b>=0, "
                               f"0<d_min<d_max; got {self}")

    def intensity(self, duration_h: FloatArray | float) -> FloatArray:
        """Threshold intensity (mm/h) at each duration; NaN outside the validity range."""
        d = np.asarray(duration_h, dtype=np.float64)
        ok = (d >= self.d_min_h) & (d <= self.d_max_h)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ok, self.a * d ** (-self.b), np.nan)

    def exceedance(self, intensity: FloatArray, duration_h: FloatArray | float) -> FloatArray:
        """I / I_threshold(D): >= 1 means the rain is on or above the curve."""
        return np.asarray(intensity, dtype=np.float64) / self.intensity(duration_h)


CAINE_1980 = IDThreshold("Caine 1980 (world)", 14.82, 0.39, 10 / 60, 240.0)
ALEOTTI_2004 = IDThreshold("Aleotti 2004 (Piedmont)", 19.0, 0.50, 4.0, 150.0)
GUZZETTI_2008 = IDThreshold("Guzzetti et al. 2008 (global)", 2.20, 0.44, 0.1, 1000.0,
                            confirmed=False)
# Validity ranges: Caine's curve spans 10 min to 10 days; Aleotti's 4–150 h range is taken
# from secondary summaries (unconfirmed) and is only used to blank out extrapolation.


def id_exceedance(
    accumulations: FloatArray, windows_h: tuple[float, ...], threshold: IDThreshold
) -> tuple[FloatArray, FloatArray]:
    """Most critical duration: max over windows of (acc/D)/I_thr(D). Returns (ratio per
    channel, duration in hours where it occurs); NaN when no window is valid."""
    d = np.asarray(windows_h, dtype=np.float64)
    acc = np.asarray(accumulations, dtype=np.float64)
    if acc.shape[-1] != d.size:
        raise InvalidInput(f"{acc.shape[-1]} accumulation columns for {d.size} windows")
    ratio = threshold.exceedance(acc / d, d)
    valid = ~np.isnan(ratio)
    best = np.where(valid, ratio, -np.inf).argmax(axis=-1)
    r = np.take_along_axis(ratio, best[..., None], -1)[..., 0]
    any_valid = valid.any(axis=-1)
    return np.where(any_valid, r, np.nan), np.where(any_valid, d[best], np.nan)


@dataclass(frozen=True)
class AntecedentConfig:
    """R_a = Σ_{i} k^i r_i over the last `days` days (i = 0 is today when included)."""

    k: float = 0.79  # Fujian study, unconfirmed; 0.8–0.9 common
    days: int = 3
    include_today: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.k < 1:
            raise InvalidInput(f"antecedent decay k must be in (0, 1), got {self.k}")
        if self.days < 1:
            raise InvalidInput(f"antecedent days must be >= 1, got {self.days}")


def effective_antecedent_rainfall(daily: FloatArray, cfg: AntecedentConfig) -> FloatArray:
    """R_a per channel and day, same shape as `daily`; NaN where the window is incomplete."""
    x = np.asarray(daily, dtype=np.float64)
    i0 = 0 if cfg.include_today else 1
    powers = np.arange(i0, cfg.days + 1)
    weights = cfg.k ** powers  # weight for rain `power` days before the current day
    n = int(powers.max()) + 1
    out = np.full(x.shape, np.nan)
    if x.shape[-1] >= n:
        win = sliding_window_view(x, n, axis=-1)  # win[..., j, m] = x[..., j + m]
        # x[d - i] sits at window column n - 1 - i.
        out[..., n - 1:] = win[..., n - 1 - powers] @ weights
    return out


@dataclass(frozen=True)
class WindowThresholdTable:
    """Accumulation thresholds per window; any window reaching its value sets the level."""

    windows_h: tuple[float, ...] = (1.0, 3.0, 6.0, 24.0)
    # rows = windows, columns = blue, yellow, orange, red (mm)
    thresholds_mm: tuple[tuple[float, float, float, float], ...] = field(
        default=((35, 45, 60, 80), (55, 75, 100, 120), (70, 95, 120, 150), (100, 130, 160, 200))
    )

    def __post_init__(self) -> None:
        if len(self.windows_h) != len(self.thresholds_mm):
            raise InvalidInput(f"{len(self.windows_h)} windows but {len(self.thresholds_mm)} "
                               "threshold rows")
        _check_windows(np.asarray(self.windows_h, dtype=np.float64))
        check_thresholds(self.thresholds_mm, "rain window table")

    def levels(self, accumulations: FloatArray) -> LevelArray:
        """Level per channel from (channels, windows) accumulations in table order."""
        acc = np.asarray(accumulations, dtype=np.float64)
        if acc.shape[-1] != len(self.windows_h):
            raise InvalidInput(f"{acc.shape[-1]} accumulation columns for "
                               f"{len(self.windows_h)} table windows")
        per_window = classify(acc, np.asarray(self.thresholds_mm, dtype=np.float64))
        return per_window.max(axis=-1).astype(LEVEL_DTYPE)

    def evaluate(self, r: Ragged, at: FloatArray | float) -> LevelArray:
        return self.levels(window_accumulations(r, at, self.windows_h))
