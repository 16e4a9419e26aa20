"""Robust displacement velocity on several time scales, and when acceleration is established.

Input is a regular grid of bin values (hourly medians of the raw readings, offset-corrected;
NaN where a bin has no reading), shaped (channels, bins), newest bin last. See
docs/methods.md, "Velocity" and "Acceleration".

- `pair_velocity`: the MIDAS idea (Blewitt et al. 2016): the median of the slopes between
  pairs of bins separated by a fixed lag (here half the window), so an outlier or a short
  burst moves few pairs. Standard error as MIDAS gives it, 1.2533 · σ_pairs / √(pairs),
  σ_pairs = 1.4826 · MAD of the pair slopes, floored by what the bin noise alone implies
  (three pairs have no usable MAD).
- `bin_noise`: the scatter of one bin, from the MAD of first differences (/√2).
- `acceleration_seen`: velocity rises consistently across scales: each shorter scale faster
  than the next longer one by more than `z` combined standard errors on at least
  `min_pairs` adjacent pairs, none significantly slower, and the daily velocity
  significantly positive. Persistence over time is the engine's (engine/displacement.py).
- `ordered_rise`: the stronger evidence that lets the engine wait less: the scales from the
  daily one up ordered, each faster than the next longer by more than `z` combined errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.ragged import BoolArray, FloatArray
from geowarn.errors import InvalidInput

MAD_TO_SIGMA = 1.4826
MEDIAN_EFFICIENCY = 1.2533  # √(π/2): the standard error of a median over that of a mean


@dataclass(frozen=True)
class Velocity:
    v: FloatArray  # units per second (channels,)
    se: FloatArray  # its standard error
    pairs: np.ndarray  # number of finite pairs used


def nanmedian_last(a: FloatArray) -> FloatArray:
    """Median along the last axis ignoring NaN (NaN where a row has none). numpy's nanmedian
    goes through masked arrays for small rows, ~50× slower on the engine's shapes."""
    s = np.sort(np.asarray(a, dtype=np.float64), axis=-1)  # NaN sort last
    n = np.isfinite(s).sum(axis=-1)
    lo = np.maximum((n - 1) // 2, 0)[..., None]
    hi = np.maximum(n // 2, 0)[..., None]
    if s.shape[-1] == 0:
        return np.full(s.shape[:-1], np.nan)
    m = 0.5 * (np.take_along_axis(s, lo, -1) + np.take_along_axis(s, hi, -1))[..., 0]
    return np.where(n > 0, m, np.nan)


def _nanmedian(a: FloatArray) -> FloatArray:
    return nanmedian_last(a)


def bin_noise(y: FloatArray) -> FloatArray:
    """Robust scatter of one bin per channel: 1.4826 · MAD(first differences) / √2.

    Differences remove a slow trend; a step moves one difference only."""
    d = np.diff(np.asarray(y, dtype=np.float64), axis=-1)
    med = _nanmedian(d)
    return np.asarray(MAD_TO_SIGMA * _nanmedian(np.abs(d - med[..., None])) / np.sqrt(2.0))


def pair_velocity(y: FloatArray, bin_s: float, noise: FloatArray | None = None,
                  min_cover: float = 0.5) -> Velocity:
    """MIDAS-style velocity over the whole window of each row (see module docstring).

    NaN where fewer than `min_cover` of the possible pairs (and fewer than 3) are finite."""
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    if n < 2 or not bin_s > 0:
        raise InvalidInput(f"pair velocity needs >= 2 bins and bin_s > 0, got {n}, {bin_s}")
    lag = max(n // 2, 1)
    dt = lag * bin_s
    slopes = (y[..., lag:] - y[..., : n - lag]) / dt
    ok = np.isfinite(slopes)
    pairs = ok.sum(axis=-1)
    med = _nanmedian(slopes)
    mad = _nanmedian(np.abs(slopes - med[..., None]))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = MEDIAN_EFFICIENCY * MAD_TO_SIGMA * mad / np.sqrt(pairs)
        if noise is not None:
            floor = MEDIAN_EFFICIENCY * np.sqrt(2.0) * np.asarray(noise) / dt / np.sqrt(pairs)
            se = np.fmax(se, floor)
    enough = (pairs >= 3) & (pairs >= min_cover * (n - lag))
    nan = np.full(med.shape, np.nan)
    return Velocity(np.where(enough, med, nan), np.where(enough, se, nan), pairs)


def multi_scale(y: FloatArray, bin_s: float, scales_bins: tuple[int, ...],
                noise: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """Velocity and standard error (channels, scales) over the last `scales_bins[k]` bins."""
    n = y.shape[-1]
    v = np.full(y.shape[:-1] + (len(scales_bins),), np.nan)
    se = np.full_like(v, np.nan)
    for k, w in enumerate(scales_bins):
        if w > n:
            raise InvalidInput(f"velocity scale of {w} bins exceeds the {n} bins given")
        res = pair_velocity(y[..., n - w:], bin_s, noise)
        v[..., k], se[..., k] = res.v, res.se
    return v, se


def acceleration_seen(v: FloatArray, se: FloatArray, daily: int, z: FloatArray | float,
                      min_pairs: np.ndarray | int,
                      earlier: tuple[FloatArray, FloatArray] | None = None) -> BoolArray:
    """Velocities (channels, scales), scales ordered shortest first; `daily` is the index of
    the one-day scale; z and min_pairs scalars or (channels,); `earlier` the same velocities
    and errors over windows ending half a day before.
    True where velocity rises consistently across scales (see module docstring)."""
    if np.any(~(np.asarray(z) > 0)) or np.any(np.asarray(min_pairs) < 1):
        raise InvalidInput(f"acceleration needs z > 0 and min_pairs >= 1, got {z}, {min_pairs}")
    z = np.asarray(z, dtype=np.float64)
    diff = v[..., :-1] - v[..., 1:]
    lim = z[..., None] * np.hypot(se[..., :-1], se[..., 1:])
    with np.errstate(invalid="ignore"):
        faster = diff > lim
        slower = diff < -lim
        moving = v[..., daily] > z * se[..., daily]
    agree = faster.sum(axis=-1)
    if earlier is not None:
        agree = agree + _far_agreement(v, se, earlier[0], earlier[1], daily, z)
    return np.asarray(moving & (agree >= min_pairs) & ~slower.any(axis=-1))


def _far_agreement(v: FloatArray, se: FloatArray, v0: FloatArray, se0: FloatArray,
                   daily: int, z: FloatArray) -> np.ndarray:
    """Pairs of scales from the daily one up (1 d vs 3 d, 3 d vs 7 d, 1 d vs 7 d) where the
    shorter is faster by z combined errors, counted only while those scales are ordered (each
    faster than the next longer) now and were so half a day before, with the same
    significance: agreement over time. An adjacent pair so found counts once across scales
    and once over time. On hourly GNSS the 6 h and 1 d scales' errors exceed the signal for
    days: 3 d vs 7 d can be 4–8 errors apart for two days before failure while nothing else
    is significant (issue 7 outside trial, Saito-type slopes), and 1 d vs 3 d alone can sit
    inside its band while 1 d vs 7 d is plainly faster. Asking the agreement to hold over
    two windows with the scales ordered keeps an undetected step, whose signature on the
    scales lasts about a day and is not ordered (the daily scale has left it behind while
    the 3 d one still holds it), from being read as acceleration."""
    i, j = np.triu_indices(v.shape[-1], k=1)
    keep = i >= daily
    i, j = i[keep], j[keep]
    if i.size == 0:
        return np.zeros(v.shape[:-1], np.int64)

    def holds(vv: FloatArray, ss: FloatArray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            ordered = np.all(np.diff(vv[..., daily:], axis=-1) < 0, axis=-1)
            sig = (vv[..., i] - vv[..., j]) > z[..., None] * np.hypot(ss[..., i], ss[..., j])
        return np.asarray(sig & ordered[..., None])

    return np.asarray((holds(v, se) & holds(v0, se0)).sum(axis=-1))


def ordered_rise(v: FloatArray, se: FloatArray, daily: int, z: FloatArray | float
                 ) -> BoolArray:
    """Velocities (channels, scales) shortest first, `daily` the index of the one-day scale,
    z scalar or (channels,). True where every adjacent pair of scales from the daily one up
    (1 d > 3 d > 7 d) has the shorter faster by more than z combined standard errors and the
    daily velocity is z errors above zero. The shortest scales are left out: on hourly GNSS
    their errors exceed the signal until the last hours (docs/methods.md, "Acceleration")."""
    if np.any(~(np.asarray(z) > 0)):
        raise InvalidInput(f"an ordered rise needs z > 0, got {z}")
    z = np.asarray(z, dtype=np.float64)
    vv, ss = v[..., daily:], se[..., daily:]
    with np.errstate(invalid="ignore"):
        apart = (vv[..., :-1] - vv[..., 1:]) > z[..., None] * np.hypot(ss[..., :-1], ss[..., 1:])
        moving = vv[..., 0] > z * ss[..., 0]
    return np.asarray(moving & apart.all(axis=-1) & (vv.shape[-1] > 1))
