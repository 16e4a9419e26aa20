"""Pollution rules: GB 3838-2002 surface-water classes, HJ 633-2012 AQI, persistence of
exceedance (N of the last M samples) and sudden jumps.

Sources (docs/methods.md):
- GB 3838-2002 class limits (mg/L). Dissolved oxygen is a minimum, the rest maxima; pH must
  be 6–9 in every class. A value worse than class V is "inferior V" (劣V, class 6 here).
  The class of a value is the best class whose limit it meets (COD ≤ 15 is class I even
  though classes I and II share the limit).
- HJ 633-2012: IAQI by linear interpolation between breakpoints; AQI = max IAQI. SO2 1 h
  above 800 µg/m³ and O3 8 h above 800 µg/m³ have no IAQI of their own (the standard says
  to use SO2 24 h and O3 1 h): they give NaN here. Above the last breakpoint we cap IAQI at
  500 (our choice: the table ends there, and the band is "severe" either way).
Persistence and jump thresholds are per-site settings; no defaults are published.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.ragged import BoolArray, FloatArray, IntArray
from alerts.methods.rainfall import rolling_sum
from geowarn.errors import InvalidInput

INFERIOR_V = 6

# item -> (limits for classes I..V, "max" | "min")
GB3838_LIMITS: dict[str, tuple[tuple[float, ...], str]] = {
    "dissolved_oxygen": ((7.5, 6.0, 5.0, 3.0, 2.0), "min"),
    "permanganate_index": ((2.0, 4.0, 6.0, 10.0, 15.0), "max"),
    "cod": ((15.0, 15.0, 20.0, 30.0, 40.0), "max"),
    "bod5": ((3.0, 3.0, 4.0, 6.0, 10.0), "max"),
    "ammonia_nitrogen": ((0.15, 0.5, 1.0, 1.5, 2.0), "max"),
    "total_phosphorus": ((0.02, 0.1, 0.2, 0.3, 0.4), "max"),
    "total_phosphorus_lake": ((0.01, 0.025, 0.05, 0.1, 0.2), "max"),
    "total_nitrogen": ((0.2, 0.5, 1.0, 1.5, 2.0), "max"),
}
PH_RANGE = (6.0, 9.0)


def gb3838_class(item: str, values: FloatArray) -> np.ndarray:
    """Water class 1..5 (I..V) or 6 (inferior V) per value; 0 where the value is NaN."""
    v = np.asarray(values, dtype=np.float64)
    if item == "ph":
        cls = np.where((v >= PH_RANGE[0]) & (v <= PH_RANGE[1]), 1, INFERIOR_V)
    else:
        if item not in GB3838_LIMITS:
            raise InvalidInput(f"unknown GB 3838 item {item!r}; known: "
                               f"{sorted([*GB3838_LIMITS, 'ph'])}")
        limits, kind = GB3838_LIMITS[item]
        lim = np.asarray(limits)
        with np.errstate(invalid="ignore"):
            meets = (v[..., None] >= lim) if kind == "min" else (v[..., None] <= lim)
        cls = np.where(meets.any(axis=-1), meets.argmax(axis=-1) + 1, INFERIOR_V)
    return np.where(np.isnan(v), 0, cls).astype(np.int8)


def overall_class(classes: np.ndarray) -> np.ndarray:
    """Worst class over the first axis (items); 0 (unknown) where no item was measured."""
    return np.asarray(classes).max(axis=0).astype(np.int8)


IAQI_BREAKS = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0)
AQI_BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),  # mg/m³
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),  # mg/m³
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
}
_NO_IAQI_ABOVE_TABLE = {"so2_1h", "o3_8h"}


def iaqi(pollutant: str, concentration: FloatArray) -> FloatArray:
    """Individual AQI by linear interpolation (µg/m³; CO in mg/m³). Negative → InvalidInput."""
    if pollutant not in AQI_BREAKPOINTS:
        raise InvalidInput(f"unknown AQI pollutant {pollutant!r}; known: "
                           f"{sorted(AQI_BREAKPOINTS)}")
    c = np.asarray(concentration, dtype=np.float64)
    if np.any(c < 0):
        raise InvalidInput(f"{pollutant}: concentrations must be >= 0")
    bp = np.asarray(AQI_BREAKPOINTS[pollutant], dtype=np.float64)
    iv = np.asarray(IAQI_BREAKS[: bp.size])
    out = np.interp(c, bp, iv)  # clamps at the last breakpoint's IAQI
    if pollutant in _NO_IAQI_ABOVE_TABLE:
        out = np.where(c > bp[-1], np.nan, out)
    else:
        out = np.where(c > bp[-1], 500.0, out)
    return np.where(np.isnan(c), np.nan, out)


def aqi(iaqis: dict[str, FloatArray]) -> tuple[FloatArray, np.ndarray]:
    """AQI = max IAQI over the given pollutants, and the index (in dict order) of the primary
    pollutant (-1 when AQI ≤ 50 or nothing is known: HJ 633 names none then)."""
    if not iaqis:
        raise InvalidInput("AQI needs at least one IAQI")
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in iaqis.values()])
    known = ~np.isnan(stack).all(axis=0)
    filled = np.where(np.isnan(stack), -np.inf, stack)
    value = np.where(known, filled.max(axis=0), np.nan)
    primary = np.where(known & (value > 50), filled.argmax(axis=0), -1)
    return value, primary


@dataclass(frozen=True)
class AqiBand:
    name: str
    chinese: str
    rgb: tuple[int, int, int]


AQI_BANDS = (
    AqiBand("excellent", "优", (0, 228, 0)),
    AqiBand("good", "良", (255, 255, 0)),
    AqiBand("light", "轻度污染", (255, 126, 0)),
    AqiBand("moderate", "中度污染", (255, 0, 0)),
    AqiBand("heavy", "重度污染", (153, 0, 76)),
    AqiBand("severe", "严重污染", (126, 0, 35)),
)
_BAND_UPPER = np.array([50.0, 100.0, 150.0, 200.0, 300.0])


def aqi_band(aqi_value: FloatArray) -> np.ndarray:
    """Band index into AQI_BANDS (0 excellent … 5 severe); -1 for NaN."""
    a = np.asarray(aqi_value, dtype=np.float64)
    return np.where(np.isnan(a), -1, np.searchsorted(_BAND_UPPER, a, side="left"))


def persistent(exceeds: BoolArray, n: int | IntArray, m: int | IntArray) -> BoolArray:
    """True where at least n of the last m samples (this one included) exceed; a sample
    with no data counts as not exceeding (pass NaN-aware masks in). n and m are scalars or
    one per row of a 2-D `exceeds` (the engine's per-channel rules)."""
    n_a, m_a = np.asarray(n), np.asarray(m)
    if np.any(~((n_a >= 1) & (n_a <= m_a))):
        raise InvalidInput(f"persistence needs 1 <= n <= m, got n={n}, m={m}")
    e = np.asarray(exceeds, dtype=np.float64)
    c = np.concatenate([np.zeros(e.shape[:-1] + (1,)), np.cumsum(e, axis=-1)], axis=-1)
    idx = np.arange(1, e.shape[-1] + 1)
    m_col = m_a[..., None] if m_a.ndim else m_a
    lo = np.broadcast_to(np.maximum(idx - m_col, 0), e.shape)
    window = c[..., idx] - np.take_along_axis(c, lo, axis=-1)
    return np.asarray(window >= (n_a[..., None] if n_a.ndim else n_a))


def sudden_jump(values: FloatArray, baseline_samples: int, min_rise: float,
                min_ratio: float | None = None) -> BoolArray:
    """True where a sample rises above the mean of the `baseline_samples` before it by at
    least `min_rise` (and, if given, to at least min_ratio × that mean)."""
    if baseline_samples < 1 or not min_rise >= 0:
        raise InvalidInput("sudden_jump needs baseline_samples >= 1 and min_rise >= 0")
    v = np.asarray(values, dtype=np.float64)
    base = rolling_sum(v, baseline_samples, include_current=False) / baseline_samples
    with np.errstate(invalid="ignore"):
        hit = (v - base) >= min_rise
        if min_ratio is not None:
            hit &= v >= min_ratio * base
    return hit
