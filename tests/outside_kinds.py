"""A second outside tester's series for rainfall, water level and pollution (issue 7), written
independently of simulators/, tests/outside_series.py and the other tests' generators, with
hand computations from the thresholds (raise, clear lines and the dwell, done here sample by
sample in plain Python) and a runner that feeds the engine's pure tick in *arrival* order
(backlogs arrive late, duplicates twice).

Rain: multi-peak storms through a real tipping bucket (the remainder carried, 0.1/0.2/0.5 mm),
long soaking rain, 1 to 60-minute reports, clock skew, lost reports. Water level: flood
hydrographs and reservoirs quantised to 1 cm. Pollution: plumes arriving and diluting, pH
falling (acid) or rising, dissolved oxygen with its diurnal cycle and a night-time crash (low
is worse), hourly PM2.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts.engine.rules import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H, ChannelInfo, resolve
from alerts.engine.tick import Change, build_setup
from alerts.engine.tick_methods import gb3838_levels
from alerts.methods.levels import classify
from tests.tick_harness import tick_through

T0 = 1_791_000_000.0  # 2026-10-03
HOUR = 3600.0


@dataclass(frozen=True)
class Trace:
    """Samples of one channel as they arrive: data times, values, arrival times (the engine
    clock when they reach it; a backlog arrives after newer samples)."""

    t: np.ndarray
    v: np.ndarray
    arrive: np.ndarray

    @staticmethod
    def live(t: np.ndarray, v: np.ndarray) -> Trace:
        return Trace(np.asarray(t, float), np.asarray(v, float), np.asarray(t, float))

    def clean(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct samples in data-time order (what a hand computation uses)."""
        keep = np.isfinite(self.v)
        t, v = self.t[keep], self.v[keep]
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        first = np.r_[True, t[1:] != t[:-1]]
        return t[first], v[first]


# --- generators ---------------------------------------------------------------------------


def tipping_bucket(rate_mm_h: np.ndarray, step_s: float, bucket: float) -> np.ndarray:
    """Increments of a tipping bucket: the rain accumulates and the tips counted in each
    report are whole buckets (the remainder stays in the bucket for the next report)."""
    inc = np.zeros(rate_mm_h.size)
    acc = 0.0
    for i, r in enumerate(rate_mm_h):
        acc += r * step_s / HOUR
        tips = np.floor(acc / bucket + 1e-9)
        inc[i] = tips * bucket
        acc -= tips * bucket
    return np.round(inc, 1)


def storm(rng: np.random.Generator, step_s: float, hours: float, bucket: float,
          peak_mm_h: float, n_peaks: int, skew_s: float = 0.0) -> np.ndarray:
    """(times, increments) of a multi-peak storm: asymmetric cells (fast rise, slow decay)
    with cell-to-cell variability, the gauge's clock `skew_s` off the hour grid."""
    n = int(hours * HOUR / step_s)
    t = T0 + skew_s + step_s * np.arange(1, n + 1)
    x = (t - T0) / HOUR
    rate = np.zeros(n)
    for _ in range(n_peaks):
        c = rng.uniform(0.1, 0.8) * hours
        up, down = rng.uniform(0.3, 1.5), rng.uniform(1.0, 5.0)
        shape = np.where(x < c, np.exp(-0.5 * ((x - c) / up) ** 2),
                         np.exp(-(x - c) / down))
        rate += peak_mm_h * rng.uniform(0.4, 1.0) * shape
    rate *= rng.gamma(6.0, 1 / 6.0, n)  # cells within bands (no two reports alike)
    return np.vstack([t, tipping_bucket(rate, step_s, bucket)])


def soaking(rng: np.random.Generator, step_s: float, days: float, daily_mm: float,
            bucket: float) -> np.ndarray:
    """Long soaking rain (Sitka's landslide days: 60–200 mm in a day, steady for hours):
    a slowly varying rate around daily_mm/24 per hour."""
    n = int(days * 86400 / step_s)
    t = T0 + step_s * np.arange(1, n + 1)
    slow = np.convolve(rng.normal(0, 1, n + 48), np.ones(48) / 48, "valid")[:n]
    rate = np.maximum(0.0, daily_mm / 24.0 * (1 + 0.8 * slow / slow.std())
                      * rng.gamma(4.0, 0.25, n))
    return np.vstack([t, tipping_bucket(rate, step_s, bucket)])


def hydrograph(rng: np.random.Generator, step_s: float, base: float, peak: float,
               rise_h: float, fall_h: float, hours: float, noise: float) -> np.ndarray:
    """A flood wave: a gamma-shaped rise to `peak` after rise_h, an exponential recession,
    gauge noise, quantised to 1 cm."""
    n = int(hours * HOUR / step_s)
    t = T0 + step_s * np.arange(n)
    x = (t - T0) / HOUR
    start = rng.uniform(1.0, 3.0)
    s = np.clip((x - start) / rise_h, 0, None)
    rising = s ** 3 * np.exp(3 * (1 - s))
    after = x > start + rise_h
    shape = np.where(after, np.exp(-(x - start - rise_h) / fall_h), rising)
    h = base + (peak - base) * shape + rng.normal(0, noise, n)
    return np.vstack([t, np.round(h, 2)])


def plume(rng: np.random.Generator, step_s: float, base: float, peak: float,
          rise_n: int, hold_n: int, decay: float, noise: float, n0: int = 30) -> np.ndarray:
    """A pollutant (or a falling pH / oxygen: peak below base) arriving over `rise_n`
    samples on a smooth curve, holding, then relaxing back; relative noise."""
    k = np.arange(1, rise_n + 1) / rise_n
    front = base + (peak - base) * (1 - np.cos(np.pi * k)) / 2
    held = np.full(hold_n, peak)
    tail = base + (peak - base) * np.exp(-decay * np.arange(1, 25))
    v = np.r_[np.full(n0, base), front, held, tail]
    v = v * (1 + rng.normal(0, noise, v.size))
    return np.vstack([T0 + step_s * np.arange(v.size), v])


def diurnal_do(rng: np.random.Generator, step_s: float, days: float, mean: float,
               amp: float, crash_at_h: float | None, crash_to: float) -> np.ndarray:
    """Dissolved oxygen: a daily cycle (photosynthesis by day, respiration by night), and
    optionally a night-time crash (an algal die-off) lasting a few hours."""
    n = int(days * 86400 / step_s)
    t = T0 + step_s * np.arange(n)
    x = (t - T0) / HOUR
    v = mean + amp * np.sin(2 * np.pi * (x - 9.0) / 24.0) + rng.normal(0, 0.05, n)
    if crash_at_h is not None:
        w = np.clip((x - crash_at_h) / 2.0, 0, None)
        dip = np.where(x >= crash_at_h, np.minimum(w, 1.0) * np.exp(-np.maximum(
            x - crash_at_h - 6.0, 0) / 3.0), 0.0)
        v = v - dip * (v - crash_to)
    return np.vstack([t, np.round(np.maximum(v, 0.0), 2)])


# --- hand computations --------------------------------------------------------------------


def hysteresis(t: np.ndarray, raise_lv: np.ndarray, hold_lv: np.ndarray,
               dwell_s: float = HOUR) -> np.ndarray:
    """Level after each sample: up at once to the raise level; down to the hold level once
    the hold has stayed below the current level for dwell_s (judged at samples)."""
    out = np.zeros(t.size, int)
    cur, since = 0, None
    for i in range(t.size):
        r, h = int(raise_lv[i]), int(hold_lv[i])
        if r > cur:
            cur, since = r, None
        elif h < cur:
            since = t[i] if since is None else since
            if t[i] - since >= dwell_s:
                cur, since = h, None
        else:
            since = None
        out[i] = cur
    return out


def rain_hand(t: np.ndarray, v: np.ndarray, table: Sequence[Sequence[float]] =
              DEFAULT_RAIN_TABLE, clear_ratio: float = 0.9) -> np.ndarray:
    raise_lv = np.zeros(t.size, int)
    hold_lv = np.zeros(t.size, int)
    csum = np.r_[0.0, np.cumsum(v)]
    for w, row in zip(RAIN_WINDOWS_H, table, strict=True):
        lo = np.searchsorted(t, t - w * HOUR, side="right")  # the window (t − w, t]
        tot = np.round(csum[1:] - csum[lo], 6)
        thr = np.asarray(row, float)
        raise_lv = np.maximum(raise_lv, classify(tot, thr))
        hold_lv = np.maximum(hold_lv, classify(tot, thr - (1 - clear_ratio) * np.abs(thr)))
    return hysteresis(t, raise_lv, np.maximum(raise_lv, hold_lv))


def stage_hand(t: np.ndarray, h: np.ndarray, stages: tuple[float, float, float],
               margin: float = 0.5, clear_m: float = 0.1) -> np.ndarray:
    table = np.array([stages[0] - margin, *stages])
    r = classify(h, table)
    return hysteresis(t, r, np.maximum(r, classify(h, table - clear_m)))


def persistence_hand(t: np.ndarray, lv: np.ndarray, n: int = 2, m: int = 3) -> np.ndarray:
    """Highest level at least n of the last m samples reach; it is both raise and hold."""
    out = np.zeros(lv.size, int)
    for i in range(lv.size):
        w = lv[max(0, i - m + 1): i + 1]
        out[i] = max([level for level in range(1, 5) if (w >= level).sum() >= n], default=0)
    return hysteresis(t, out, out)


def gb3838_hand(item: str, v: np.ndarray) -> np.ndarray:
    return np.asarray(gb3838_levels(item, np.asarray(v, float)), int)


# --- running through the engine -----------------------------------------------------------


def run(channels: Sequence[ChannelInfo], traces: Sequence[Trace],
        overrides: Mapping[tuple[str, str], Mapping[str, Any]] | None = None
        ) -> list[Change]:
    """The pure tick fed in arrival order: one tick per distinct arrival time, holding every
    sample that arrives then (sorted by channel, then data time, as the store returns them),
    the clock at the arrival time."""
    setup = build_setup(list(channels), resolve(list(channels), overrides or {}))
    pts = sorted((float(a), c, float(tt), float(vv)) for c, tr in enumerate(traces)
                 for tt, vv, a in zip(tr.t, tr.v, tr.arrive, strict=True) if np.isfinite(vv))
    return tick_through(setup, pts)


def engine_levels(changes: Sequence[Change], target: str, kind: str, t: np.ndarray
                  ) -> np.ndarray:
    """The engine's level of (target, kind) at each data time in t (its changes applied in
    order: the last change stamped at or before each time)."""
    mine = [(c.data_time.timestamp(), int(c.level)) for c in changes
            if c.target_id == target and c.hazard_kind == kind]
    out = np.zeros(t.size, int)
    for when, level in mine:
        out[t >= when] = level
    return out


def mismatches(t: np.ndarray, hand: np.ndarray, eng: np.ndarray, lag: int = 1) -> list[str]:
    """Samples where the engine's level is neither the hand level nor what the hand gave up
    to `lag` samples earlier (late by at most one sampling interval is allowed)."""
    bad = []
    for i in range(t.size):
        ok = {int(hand[j]) for j in range(max(0, i - lag), i + 1)}
        if int(eng[i]) not in ok:
            bad.append(f"t+{(t[i] - t[0]) / 60:.0f}min hand {int(hand[i])} engine "
                       f"{int(eng[i])}")
    return bad
