"""Steps (offsets) in a displacement series: a jump followed by a plateau is an offset
(antenna work, re-mounting, a sensor reset or re-zeroing), never movement. See
docs/methods.md, "Steps".

`detect_step` looks at the newest 2·m bins of each row (hourly medians, newest last) and asks
whether the series jumped between bin m−1 and bin m:

1. J = median(after − v·k) − median(before − v·k), v the velocity before the window (so
   steady creep is no jump), must exceed both `min_mm` and `z` times its noise
   (1.2533 · σ_bin · √(2/m));
2. the jump must also stand against the window's own local slope (the median of the pair
   slopes inside the m bins before and inside the m bins after): a fast but smooth
   acceleration keeps its slope across the candidate and has no local jump; both estimates
   must agree in sign and each exceed USUAL_K times the robust scatter of the same statistic
   over the sensor's past three days (a daily thermal swing is no step);
3. it must be sharp: the two bins either side of the candidate carry at least half of J;
4. what follows is a plateau: the slope after does not exceed the slope before by more than
   `z` standard errors. If it does, the step is a sudden slip that keeps moving (`slip`):
   movement, not an offset (the engine keeps it in the cumulative displacement and judges
   the faster movement after it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerts.methods.ragged import BoolArray, FloatArray
from alerts.methods.velocity import MEDIAN_EFFICIENCY, nanmedian_last, pair_velocity
from geowarn.errors import InvalidInput

# How far beyond what the sensor's own series usually shows (robust scatter of the same
# statistic over the past three days) a jump must stand: a daily thermal swing of 1.5 mm on
# 2 mm GNSS noise moves J between the halves by 2–3 mm at the swing's steepest hours, which
# a step test run every hour for weeks would otherwise read as a step (outside trial,
# 2026-12-02: 5 of 20 stations with a false step).
USUAL_K = 3.5
# Bins of the past window that must hold data before `usual` counts (fewer: no past yet, so
# no step: the first day of a record cannot tell a daily swing from a jump).
USUAL_MIN_BINS = 48


@dataclass(frozen=True)
class StepVerdict:
    offset: BoolArray  # a jump then a plateau: remove J from bin m onwards
    slip: BoolArray  # a sharp jump that keeps moving: movement, reported
    jump: FloatArray  # J in the series' units (NaN where no candidate)


def detect_step(y: FloatArray, m: int, trend_per_bin: FloatArray, noise: FloatArray,
                z: FloatArray | float, min_mm: FloatArray | float,
                usual_jump: FloatArray | None = None,
                usual_trend_jump: FloatArray | None = None) -> StepVerdict:
    """y (rows, 2m) bins, newest last; trend_per_bin (rows,) the velocity before the window
    (a long, precise estimate); noise (rows,) the scatter of one bin; usual_jump (rows,)
    the robust scatter of `local_jump` over the sensor's recent past (daily thermal swings
    make it large), which the local jump must also clear; usual_trend_jump (rows,) the same
    for J itself (`usual_trend_jumps`), which J must clear."""
    y = np.asarray(y, dtype=np.float64)
    if m < 2 or y.shape[-1] != 2 * m:
        raise InvalidInput(f"step detection needs m >= 2 and 2·m bins, got m={m}, "
                           f"{y.shape[-1]} bins")
    z = np.asarray(z, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    k = np.arange(2 * m, dtype=np.float64) - (m - 0.5)
    sigma_j = MEDIAN_EFFICIENCY * noise * np.sqrt(2.0 / m)
    jump, edge = _jump(y, m, np.nan_to_num(np.asarray(trend_per_bin, dtype=np.float64)), k)
    # The same jump with the local slope of the window itself: a smooth ramp (a slope
    # accelerating) keeps its slope across the candidate and has no local jump.
    lag = max(m // 2, 1)
    pre, post = y[:, :m], y[:, m:]
    se_b = MEDIAN_EFFICIENCY * np.sqrt(2.0) * noise / lag / np.sqrt(max(2 * (m - lag), 1))
    local = local_jump(y, m)
    sigma_local = np.hypot(sigma_j, m * se_b)
    # What this statistic does on this sensor without steps (daily thermal swings, say).
    usual = (np.zeros_like(sigma_local) if usual_jump is None
             else np.asarray(usual_jump, dtype=np.float64))  # NaN (no past yet): no step
    usual_j = (np.zeros_like(sigma_local) if usual_trend_jump is None
               else np.asarray(usual_trend_jump, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        big = ((np.abs(jump) > np.fmax(np.asarray(min_mm, dtype=np.float64), z * sigma_j))
               & (np.abs(jump) > USUAL_K * usual_j))
        # Both estimates of the jump must agree in sign: a noisy window in which the local
        # slope and the long trend disagree about the jump's direction is no step.
        local_too = ((np.abs(local) > 2.0 * sigma_local) & (np.abs(local) > USUAL_K * usual)
                     & (np.sign(local) == np.sign(jump)))
        sharp = np.abs(edge) >= 0.5 * np.abs(jump)
        cand = big & local_too & sharp & np.isfinite(jump)
    v_pre = pair_velocity(pre, 1.0, noise)
    v_post = pair_velocity(post, 1.0, noise)
    with np.errstate(invalid="ignore"):
        moving = ((v_post.v - v_pre.v) * np.sign(jump)
                  > z * np.hypot(v_pre.se, v_post.se)) & (v_post.v * np.sign(jump) > 0)
    moving &= np.isfinite(v_post.v) & np.isfinite(v_pre.v)
    return StepVerdict(cand & ~moving, cand & moving, np.where(cand, jump, np.nan))


def _jump(y: FloatArray, m: int, slope: FloatArray, k: FloatArray
          ) -> tuple[FloatArray, FloatArray]:
    r = y - slope[:, None] * k[None, :]
    jump = nanmedian_last(r[:, m:]) - nanmedian_last(r[:, :m])
    edge = nanmedian_last(r[:, m:m + 2]) - nanmedian_last(r[:, m - 2:m])
    return jump, edge


def local_jump(y: FloatArray, m: int) -> FloatArray:
    """Jump between the halves of windows (..., 2m) after removing their own local slope
    (the median pair slope, lag m/2, inside each half)."""
    lag = max(m // 2, 1)
    pre, post = y[..., :m], y[..., m:]
    pairs = np.concatenate([(pre[..., lag:] - pre[..., :m - lag]) / lag,
                            (post[..., lag:] - post[..., :m - lag]) / lag], axis=-1)
    b = np.nan_to_num(nanmedian_last(pairs))
    k = np.arange(2 * m, dtype=np.float64) - (m - 0.5)
    r = y - b[..., None] * k
    return np.asarray(nanmedian_last(r[..., m:]) - nanmedian_last(r[..., :m]))


def _robust_scatter(j: FloatArray, y: FloatArray) -> FloatArray:
    """1.4826 · MAD along the last axis; NaN where y has fewer than USUAL_MIN_BINS bins."""
    med = nanmedian_last(j)
    s = 1.4826 * nanmedian_last(np.abs(j - med[..., None]))
    return np.asarray(np.where(np.isfinite(y).sum(axis=-1) >= USUAL_MIN_BINS, s, np.nan))


def _positions(y: FloatArray, m: int) -> FloatArray:
    n = y.shape[-1]
    idx = np.arange(n - 2 * m + 1)[:, None] + np.arange(2 * m)[None, :]
    return np.asarray(y[:, idx])  # (rows, positions, 2m)


def usual_local_jump(y: FloatArray, m: int) -> FloatArray:
    """1.4826 · MAD of `local_jump` at every position of y (rows, n ≥ 2m): how big a jump
    this sensor's series shows without a step."""
    return _robust_scatter(local_jump(_positions(y, m), m), y)


def usual_trend_jumps(y: FloatArray, m: int, trend_per_bin: FloatArray) -> FloatArray:
    """1.4826 · MAD of J (the jump between halves about the trend `trend_per_bin`) at every
    position of y (rows, n ≥ 2m): a daily swing makes it large, white noise small."""
    w = _positions(y, m)
    k = np.arange(2 * m, dtype=np.float64) - (m - 0.5)
    r = w - np.nan_to_num(np.asarray(trend_per_bin, np.float64))[:, None, None] * k
    j = nanmedian_last(r[..., m:]) - nanmedian_last(r[..., :m])
    return _robust_scatter(j, y)
