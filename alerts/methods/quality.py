"""Data-quality checks before any rule sees a value: per-sample flag bits, their mapping to
Delft-FEWS-style reliability, the rule that a flagged sample never raises a warning alone,
and the offline → maintenance signal.

Checks (see warning-science.md, "Data quality"): hard and soft limits, rate-of-change
limits, stuck sensors (the same value repeated), gaps, and spikes by a Hampel filter
(centred rolling median ± k·1.4826·MAD; k = 3 is the textbook choice). Window lengths,
counts and limits are per-sensor settings; the defaults here are ours.

Input is a regular or irregular dense block: values (channels, samples) with NaN for no
reading, and times (samples,) or (channels, samples) in seconds. Flags are computed for all
channels at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

import numpy as np
from scipy.ndimage import median_filter

from alerts.methods.levels import LevelArray
from alerts.methods.ragged import BoolArray, FloatArray
from devices.messages import Quality
from geowarn.errors import InvalidInput


class Flag(IntFlag):
    MISSING = 1
    HARD_LIMIT = 2
    SOFT_LIMIT = 4
    RATE = 8
    SPIKE = 16
    STUCK = 32
    GAP_BEFORE = 64


UNRELIABLE = Flag.MISSING | Flag.HARD_LIMIT | Flag.SPIKE | Flag.STUCK
DOUBTFUL = Flag.SOFT_LIMIT | Flag.RATE | Flag.GAP_BEFORE
FLAG_DTYPE = np.uint16


@dataclass(frozen=True)
class QualityConfig:
    """Limits may be scalars or per-channel arrays (NaN/inf = no limit)."""

    hard_min: FloatArray | float = -np.inf
    hard_max: FloatArray | float = np.inf
    soft_min: FloatArray | float = -np.inf
    soft_max: FloatArray | float = np.inf
    max_rate: FloatArray | float = np.inf  # |Δvalue/Δt| per second
    hampel_half_window: int = 3  # 7-sample window
    hampel_k: float = 3.0
    hampel_min_deviation: float = 0.0  # below the sensor's resolution nothing is a spike
    stuck_count: int = 6  # this many identical readings in a row
    stuck_exempt_value: float | None = None  # e.g. 0.0 for rain: dry spells repeat zeros
    max_gap_s: float = np.inf

    def __post_init__(self) -> None:
        if self.hampel_half_window < 1 or not self.hampel_k > 0:
            raise InvalidInput("Hampel filter needs half_window >= 1 and k > 0")
        if self.stuck_count < 2:
            raise InvalidInput(f"stuck_count must be >= 2, got {self.stuck_count}")
        if np.any(np.asarray(self.hard_min) > np.asarray(self.hard_max)):
            raise InvalidInput("hard_min must not exceed hard_max")


def _col(x: FloatArray | float, ndim: int) -> np.ndarray:
    """Per-channel settings broadcast against (channels, samples)."""
    a = np.asarray(x, dtype=np.float64)
    return a[:, None] if a.ndim == 1 and ndim == 2 else a


def _ffill(v: FloatArray) -> FloatArray:
    """Forward-fill NaN along the last axis (leading NaNs take the first finite value)."""
    ok = np.isfinite(v)
    idx = np.where(ok, np.arange(v.shape[-1]), 0)
    idx = np.maximum.accumulate(idx, axis=-1)
    first = np.where(ok.any(-1), ok.argmax(-1), 0)[..., None]
    idx = np.where(np.arange(v.shape[-1]) < first, first, idx)
    return np.take_along_axis(v, idx, axis=-1)


def hampel_spikes(values: FloatArray, half_window: int, k: float, min_deviation: float = 0.0
                  ) -> BoolArray:
    """Samples further than k·1.4826·MAD (and min_deviation) from the centred median."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    filled = np.nan_to_num(_ffill(v))
    size = (1, 2 * half_window + 1)
    med = median_filter(filled, size=size, mode="nearest")
    mad = median_filter(np.abs(filled - med), size=size, mode="nearest")
    dev = np.abs(v - med)
    with np.errstate(invalid="ignore"):
        return (dev > k * 1.4826 * mad) & (dev > min_deviation)


def stuck_runs(values: FloatArray, count: int, exempt: float | None = None) -> BoolArray:
    """True from the `count`-th identical reading in a row onwards (causal, so it can flag in
    real time); NaN breaks a run."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    same = np.zeros(v.shape, dtype=bool)
    same[..., 1:] = v[..., 1:] == v[..., :-1]
    idx = np.arange(v.shape[-1])
    run_start = np.maximum.accumulate(np.where(same, 0, idx), axis=-1)
    run_len = idx - run_start + 1
    stuck = run_len >= count
    if exempt is not None:
        stuck &= v != exempt
    return stuck


def flag_samples(times: FloatArray, values: FloatArray, cfg: QualityConfig) -> np.ndarray:
    """Flag bits (uint16) per sample for every channel."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    t = np.broadcast_to(np.asarray(times, dtype=np.float64), v.shape)
    nd = v.ndim
    flags = np.zeros(v.shape, dtype=FLAG_DTYPE)
    missing = ~np.isfinite(v)
    flags |= np.where(missing, Flag.MISSING, 0).astype(FLAG_DTYPE)
    with np.errstate(invalid="ignore", divide="ignore"):
        hard = (v < _col(cfg.hard_min, nd)) | (v > _col(cfg.hard_max, nd))
        soft = (v < _col(cfg.soft_min, nd)) | (v > _col(cfg.soft_max, nd))
        rate = np.zeros(v.shape, dtype=bool)
        # Rate against the previous finite reading, not the previous slot.
        prev = _ffill(np.where(missing, np.nan, v))
        prev_t = _ffill(np.where(missing, np.nan, t))
        rate[..., 1:] = (np.abs(v[..., 1:] - prev[..., :-1])
                         > _col(cfg.max_rate, nd) * (t[..., 1:] - prev_t[..., :-1]))
        gap = np.zeros(v.shape, dtype=bool)
        gap[..., 1:] = (t[..., 1:] - prev_t[..., :-1]) > cfg.max_gap_s
    spikes = hampel_spikes(v, cfg.hampel_half_window, cfg.hampel_k, cfg.hampel_min_deviation)
    stuck = stuck_runs(v, cfg.stuck_count, cfg.stuck_exempt_value)
    for mask, bit in ((hard, Flag.HARD_LIMIT), (soft & ~hard, Flag.SOFT_LIMIT),
                      (rate, Flag.RATE), (spikes, Flag.SPIKE), (stuck, Flag.STUCK),
                      (gap & ~missing, Flag.GAP_BEFORE)):
        flags |= np.where(mask & ~missing, int(bit), 0).astype(FLAG_DTYPE)
    return flags


def reliability(flags: np.ndarray) -> np.ndarray:
    """Quality code per sample (devices.messages.Quality values)."""
    f = np.asarray(flags)
    return np.where(f & int(UNRELIABLE), int(Quality.UNRELIABLE),
                    np.where(f & int(DOUBTFUL), int(Quality.DOUBTFUL),
                             int(Quality.RELIABLE))).astype(np.int8)


def gate_levels(levels: LevelArray, flags: np.ndarray) -> LevelArray:
    """A flagged sample never raises a warning alone: its level is capped at the higher of
    the nearest unflagged samples before and after it in the same channel (0 if none), so
    it can only confirm what a clean reading shows. Unflagged samples keep their level."""
    lv = np.atleast_2d(np.asarray(levels))
    clean = np.atleast_2d(np.asarray(flags)) == 0
    n = lv.shape[-1]
    idx = np.arange(n)
    before = np.maximum.accumulate(np.where(clean, idx, -1), axis=-1)
    after = np.minimum.accumulate(np.where(clean, idx, n)[..., ::-1], axis=-1)[..., ::-1]
    padded = np.concatenate([lv, np.zeros(lv.shape[:-1] + (1,), dtype=lv.dtype)], axis=-1)
    lv_before = np.where(before >= 0, np.take_along_axis(padded, np.maximum(before, 0), -1), 0)
    lv_after = np.take_along_axis(padded, after, -1)  # index n is the padded 0
    cap = np.maximum(lv_before, lv_after)
    return np.where(clean, lv, np.minimum(lv, cap)).astype(lv.dtype)


def maintenance_due(last_seen: FloatArray, now: float, offline_after_s: FloatArray | float
                    ) -> BoolArray:
    """Channels silent for longer than offline_after_s (or never seen: NaN) need a visit;
    this is a maintenance signal, never a hazard warning."""
    ls = np.asarray(last_seen, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~(now - ls <= np.asarray(offline_after_s, dtype=np.float64))
