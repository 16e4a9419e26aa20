"""The per-method evaluations one engine tick runs, each over all its channels at once.

Each function takes the rows (channels of one method group) that received data this tick and
returns, per row, the level the newest sample reaches against the raise thresholds, the level
it still holds against the clear thresholds, whether that sample is flagged, and evidence
columns. Nothing here does I/O; nothing loops per channel.

Clear thresholds: a threshold t clears at t − (1 − clear_ratio)·|t| (so 0.9 clears a 45 mm
threshold at 40.5 mm); water-level stages clear 0.1 m below the stage. Pollution levels need
persistence (n of the last m samples reaching a level; flagged samples count as none), which
already keeps a single sample from flapping, so they clear at the raise thresholds.

Data quality is judged before any of these run (alerts/engine/tick_quality.py): samples the
screen left out carry quality ≥ 2 in the rings, so fits and persistence counts skip them, and
a newest sample with any quality mark is `flagged` (it cannot raise alone). Displacement is
not here: it is judged per closed hour on each channel's hourly history
(alerts/engine/displacement.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods import water_level as wl
from alerts.methods.levels import LEVEL_DTYPE, LevelArray, classify
from alerts.methods.pollution import AQI_BREAKPOINTS, GB3838_LIMITS, iaqi, persistent
from alerts.methods.ragged import FloatArray, IntArray

WATER_RATE_SAMPLES = 6
WATER_CLEAR_M = 0.1
# A crossing further ahead than this, extrapolated from a six-sample slope, is no forecast
# (ours). Without a horizon a nearly flat stage (+1 cm over hours) gave a crossing centuries
# ahead, beyond what a datetime holds, and the tick raised (outside trial, hourly reservoir).
CROSSING_HORIZON_S = 7 * 86400.0


@dataclass(frozen=True)
class MethodResult:
    raise_level: LevelArray
    hold_level: LevelArray
    flagged: np.ndarray  # newest sample failed a quality check
    evidence: dict[str, FloatArray]  # name -> (rows,) or (rows, k)


def clear_of(thr: FloatArray, ratio: FloatArray) -> FloatArray:
    """Clear thresholds for raise thresholds `thr` (rows, 4) and ratios (rows,)."""
    return np.asarray(thr - (1.0 - ratio[:, None]) * np.abs(thr))


def levels_pair(x: FloatArray, thr: FloatArray, clear: FloatArray
                ) -> tuple[LevelArray, LevelArray]:
    raise_lv = classify(x, thr)
    return raise_lv, np.maximum(classify(x, clear), raise_lv).astype(LEVEL_DTYPE)


def rainfall(acc_mm: FloatArray, table: FloatArray, ratio: FloatArray, q_last: np.ndarray
             ) -> MethodResult:
    """acc_mm (rows, W), table (rows, W, 4) mm; any window reaching its value sets the level."""
    raise_lv = classify(acc_mm, table).max(axis=1).astype(LEVEL_DTYPE)
    clear = table - (1.0 - ratio[:, None, None]) * np.abs(table)
    hold = np.maximum(classify(acc_mm, clear).max(axis=1), raise_lv).astype(LEVEL_DTYPE)
    return MethodResult(raise_lv, hold, q_last >= 2, {"accumulations_mm": acc_mm})


def water_level(t: FloatArray, h: FloatArray, q: np.ndarray, *, th: wl.StationThresholds,
                rate_thr: FloatArray, ratio: FloatArray) -> MethodResult:
    """Stages, rate of rise and crossing times by alerts/methods/water_level.py; the stage
    clears WATER_CLEAR_M below each stage."""
    flagged = q[:, -1] > 0
    h_now = h[:, -1]
    h = np.where(q >= 2, np.nan, h)  # samples the screen left out stay out of the rate
    stage_r = wl.stage_levels(h_now, th)
    stage_h = np.maximum(classify(h_now, th.table() - WATER_CLEAR_M), stage_r)
    fit = wl.rise_rate(t, h, WATER_RATE_SAMPLES)
    rate = fit.slope * 3600.0
    rate_r, rate_h = levels_pair(rate, rate_thr, clear_of(rate_thr, ratio))
    t_cross = np.stack([wl.time_to_crossing(t[:, -1], h_now, fit.slope, thr)
                        for thr in (th.warning, th.guaranteed, th.historical_max)], axis=1)
    with np.errstate(invalid="ignore"):
        t_cross = np.where(t_cross - t[:, -1:] <= CROSSING_HORIZON_S, t_cross, np.nan)
    return MethodResult(np.maximum(stage_r, rate_r).astype(LEVEL_DTYPE),
                        np.maximum(stage_h, rate_h).astype(LEVEL_DTYPE), flagged,
                        {"value": h_now, "rise_rate_m_per_h": rate,
                         "time_to_crossing": t_cross})


def gb3838_levels(item: str, v: FloatArray) -> LevelArray:
    """The mapping documented in alerts/engine/rules.py, for one GB 3838 item."""
    if item == "ph":
        dev = np.maximum(6.0 - v, v - 9.0)
        return classify(dev, (np.nan, np.nextafter(0.0, 1.0), np.nextafter(2.0, 3.0), np.nan))
    limits, kind = GB3838_LIMITS[item]
    if kind == "min":  # dissolved oxygen: below class IV, below V, …
        return classify(-v, (np.nextafter(-limits[3], 0.0), np.nextafter(-limits[4], 0.0),
                             -1.0 + 1e-12, -0.5 + 1e-12))
    return classify(v, (np.nextafter(limits[3], np.inf), np.nextafter(limits[4], np.inf),
                        2.0 * limits[4], 4.0 * limits[4]))


def aqi_levels(table: str, v: FloatArray) -> LevelArray:
    i = iaqi(table, np.maximum(v, 0.0))
    return classify(i, (np.nextafter(200.0, 1e9), np.nextafter(300.0, 1e9),
                        np.nextafter(400.0, 1e9), 500.0))


def pollution(v: FloatArray, q: np.ndarray, items: list[str], aqi: bool, *,
              persist_n: IntArray, persist_m: IntArray) -> MethodResult:
    """v (rows, m_max) last samples; `items` the GB 3838 item or HJ 633 table per row."""
    lv = np.zeros(v.shape, dtype=LEVEL_DTYPE)
    for name in sorted(set(items)):  # a handful of pollutants, each one vector op
        sel = np.array([i == name for i in items])
        lv[sel] = aqi_levels(name, v[sel]) if aqi else gb3838_levels(name, v[sel])
    flagged = q[:, -1] > 0
    doubted = (q > 0) | ~np.isfinite(v)
    # A doubted sample (pending outlier, implausible, device-flagged) neither raises nor
    # lowers: it counts as nothing for raising, and for holding as the newest trusted sample
    # before it (outside trial: the falling samples of a diluting plume were pending
    # outliers, counted as clean water, and orange cleared two samples early).
    last_ok = np.maximum.accumulate(np.where(doubted, -1, np.arange(v.shape[1])), axis=1)
    keep_lv = np.where(last_ok >= 0, np.take_along_axis(lv, np.maximum(last_ok, 0), 1), 0)
    lv = np.where(doubted, 0, lv)
    level = np.zeros(v.shape[0], LEVEL_DTYPE)
    hold = np.zeros(v.shape[0], LEVEL_DTYPE)
    for lv_min in range(1, 5):  # the highest level n of the last m samples reach
        held = persistent(lv >= lv_min, persist_n, persist_m)[:, -1]
        level = np.where(held, lv_min, level).astype(LEVEL_DTYPE)
        kept = persistent(keep_lv >= lv_min, persist_n, persist_m)[:, -1]
        hold = np.where(kept, lv_min, hold).astype(LEVEL_DTYPE)
    ev: dict[str, FloatArray] = {"value": v[:, -1]}
    if aqi:
        ev["iaqi"] = np.full(v.shape[0], np.nan)
        for name in sorted(set(items)):
            sel = np.array([i == name for i in items])
            ev["iaqi"][sel] = iaqi(name, np.maximum(np.nan_to_num(v[sel, -1]), 0.0))
    return MethodResult(level, np.maximum(level, hold).astype(LEVEL_DTYPE), flagged, ev)


def threshold(v: FloatArray, q: np.ndarray, *, thr: FloatArray, ratio: FloatArray
              ) -> MethodResult:
    flagged = q[:, -1] > 0
    r, h = levels_pair(v[:, -1], thr, clear_of(thr, ratio))
    return MethodResult(r, h, flagged, {"value": v[:, -1]})


assert set(AQI_BREAKPOINTS) >= {"pm25_24h", "pm10_24h", "so2_1h", "no2_1h", "o3_1h", "co_1h"}
