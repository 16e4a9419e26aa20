"""An outside tester's series (issue 7), written from the issue's words and the real records in
../shared/data, independent of simulators/ and of the other tests' generators, plus the hand
computations they are checked against and a runner through the engine's pure tick.

Rain: typhoon rain bands (a few bands of rising then falling intensity, the peak hour in the
range of the Lamosano record's wettest hours, ~50 mm/h, up to twice that) sampled at 5, 10 or
60 minutes and quantised to a 0.2 mm tipping bucket, with lost samples. Water level: a river
before and after a data gap. Pollution: a pollutant arriving over a few samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts.engine.rule_params import DEFAULT_RAIN_TABLE, RAIN_WINDOWS_H
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, build_setup, tick
from alerts.methods.levels import classify

T0 = 1_790_000_000.0  # 2026-09-21: typhoon season
BUCKET_MM = 0.2
LON, LAT = 119.9, 28.4
KM_LON = 1.0 / (111.32 * np.cos(np.radians(LAT)))


@dataclass(frozen=True)
class Trace:
    """Samples of one channel: times (s) and values; NaN values are lost samples."""

    t: np.ndarray
    v: np.ndarray


def typhoon_rain(rng: np.random.Generator, step_s: float, hours: float = 30.0,
                 peak_mm_h: float | None = None, drop: float = 0.03) -> Trace:
    """Rain increments (mm per sample) of a typhoon's bands."""
    n = int(hours * 3600 / step_s)
    t = T0 + step_s * np.arange(1, n + 1)
    rate = np.zeros(n)  # mm/h
    peak = peak_mm_h if peak_mm_h is not None else rng.uniform(25.0, 95.0)
    for _ in range(int(rng.integers(2, 5))):
        centre = rng.uniform(0.15, 0.85) * hours * 3600
        width = rng.uniform(1.0, 4.0) * 3600
        rate += peak * rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((t - T0 - centre) / width) ** 2)
    rate *= np.exp(rng.normal(0.0, 0.35, n))  # cells within the bands
    inc = np.floor(rate * step_s / 3600.0 / BUCKET_MM + rng.uniform(0, 1, n)) * BUCKET_MM
    inc = np.round(inc, 1)
    lost = rng.uniform(0, 1, n) < drop
    return Trace(t, np.where(lost, np.nan, inc))


def rain_levels_by_hand(tr: Trace, table: Sequence[Sequence[float]] = DEFAULT_RAIN_TABLE
                        ) -> np.ndarray:
    """Level at each (kept) sample: any window (t − W, t] reaching its threshold."""
    ok = np.isfinite(tr.v)
    t, v = tr.t[ok], tr.v[ok]
    lv = np.zeros(t.size, np.int8)
    csum = np.r_[0.0, np.cumsum(v)]
    for w, row in zip(RAIN_WINDOWS_H, table, strict=True):
        start = np.searchsorted(t, t - w * 3600.0, side="right")
        tot = csum[np.arange(1, t.size + 1)] - csum[start]
        lv = np.maximum(lv, classify(np.round(tot, 6), np.asarray(row)))
    out = np.zeros(tr.t.size, np.int8)
    out[ok] = lv
    return out


def first_at(tr: Trace, levels: np.ndarray, level: int) -> float | None:
    i = np.flatnonzero((levels >= level) & np.isfinite(tr.v))
    return float(tr.t[i[0]]) if i.size else None


def rain_gauge(cid: int, dev: str, target: str, step_s: float, km_east: float = 0.0
               ) -> ChannelInfo:
    return ChannelInfo(cid, dev, "rain_gauge", "rain", target, None, step_s,
                       lon=LON + km_east * KM_LON, lat=LAT)


def live(channels: Sequence[ChannelInfo], traces: Sequence[Trace],
         overrides: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
         regional: Sequence[int] | None = None, batch_s: float = 0.0) -> list[Change]:
    """Live through the traces with the pure tick: samples in data-time order, one tick per
    `batch_s` of data (0: per distinct sample time), the clock at the batch's newest sample."""
    setup = build_setup(list(channels), resolve(list(channels), overrides or {}))
    state = EngineState.initial(setup)
    reg = None
    if regional is not None:
        tg: list[tuple[str, str]] = [c.target for c in channels]
        reg = np.array([regional[tg.index(t)]
                        for t in setup.targets], np.int8)
    pts = sorted((float(tt), c, float(vv)) for c, tr in enumerate(traces)
                 for tt, vv in zip(tr.t, tr.v, strict=True) if np.isfinite(vv))
    out: list[Change] = []
    i = 0
    while i < len(pts):
        j = i
        while j < len(pts) and pts[j][0] <= pts[i][0] + batch_s:
            j += 1
        batch = sorted(pts[i:j], key=lambda p: (p[1], p[0]))
        s = Samples(np.array([p[1] for p in batch], np.int64),
                    np.array([p[0] for p in batch]), np.array([p[2] for p in batch]),
                    np.zeros(len(batch), np.int8))
        state, res = tick(setup, state, s, max(p[0] for p in batch), reg)
        out += res.changes
        i = j
    return out


def first_change(changes: Sequence[Change], target: str, kind: str, level: int
                 ) -> float | None:
    return next((c.data_time.timestamp() for c in changes if c.target_id == target
                 and c.hazard_kind == kind and int(c.level) >= level), None)


def top(changes: Sequence[Change], target: str, kind: str) -> int:
    return max((int(c.level) for c in changes if c.target_id == target
                and c.hazard_kind == kind), default=0)


def quality_events(changes: Sequence[Change], device: str) -> list[Change]:
    return [c for c in changes if c.hazard_kind == "data_quality" and c.target_id == device
            and int(c.level) > 0]


# --- water level --------------------------------------------------------------------------


def river_after_gap(rng: np.random.Generator, step_s: float, gap_h: float = 2.0,
                    stages: tuple[float, float, float] = (4.0, 5.0, 6.5)) -> tuple[Trace, int]:
    """A river below the warning level, a gap of `gap_h`, then every reading well above the
    guaranteed level and still rising. Returns the trace and the first index after the gap."""
    warn, guar, hist = stages
    before = int(6 * 3600 / step_s)
    after = int(4 * 3600 / step_s)
    base = warn - rng.uniform(0.8, 1.5)
    h1 = base + np.cumsum(rng.normal(0.002, 0.004, before))
    t1 = T0 + step_s * np.arange(before)
    t_gap_end = t1[-1] + gap_h * 3600.0
    start = guar + rng.uniform(0.2, 0.6)
    rise = rng.uniform(0.02, 0.1) * step_s / 600.0  # m per sample
    h2 = start + rise * np.arange(after) + rng.normal(0, 0.01, after)
    h2 = np.minimum(h2, hist - 0.2)
    t2 = t_gap_end + step_s * np.arange(after)
    return Trace(np.r_[t1, t2], np.asarray(np.round(np.r_[h1, h2], 2))), before


def river_channel(step_s: float, i: int = 0) -> ChannelInfo:
    """Station i (one per seed: many seeds run as many stations in one engine)."""
    return ChannelInfo(i + 1, f"WL{i}", "water_level", "level", None, f"RIV{i}", step_s)


def river_rules(n: int = 1, stages: tuple[float, float, float] = (4.0, 5.0, 6.5)) -> dict:
    return {("site", f"RIV{i}"): {"warning_m": stages[0], "guaranteed_m": stages[1],
                                  "historical_max_m": stages[2]} for i in range(n)}


# --- pollution ----------------------------------------------------------------------------

# GB 3838-2002 ammonia nitrogen: class IV 1.5, class V 2.0 mg/L; the engine's mapping (rules.py):
# > V blue? No: class V blue (> IV limit), worse than V yellow (> V limit), ≥ 2×V orange, ≥ 4×V red.
NH3_IV, NH3_V = 1.5, 2.0


def ammonia_by_hand(v: np.ndarray) -> np.ndarray:
    lv = np.zeros(v.size, np.int8)
    lv[v > NH3_IV] = 1
    lv[v > NH3_V] = 2
    lv[v >= 2 * NH3_V] = 3
    lv[v >= 4 * NH3_V] = 4
    return lv


def two_of_three(lv: np.ndarray) -> np.ndarray:
    """The persistence rule: the highest level at least 2 of the last 3 samples reach."""
    out = np.zeros(lv.size, np.int8)
    for i in range(lv.size):
        w = lv[max(0, i - 2): i + 1]
        for level in range(1, 5):
            if (w >= level).sum() >= 2:
                out[i] = level
    return out


def ammonia_arrival(rng: np.random.Generator, step_s: float, growth: float) -> Trace:
    """Ammonia at ~0.3 mg/L, then a plume rising by `growth`× per sample from ~1.1 mg/L for a
    few samples up to a plateau, then dilution."""
    n0 = 30
    base = np.abs(0.3 + rng.normal(0, 0.03, n0))
    start = rng.uniform(1.0, 1.3)
    peak = rng.uniform(3.0, 9.0)
    rise = [start]
    while rise[-1] * growth < peak:
        rise.append(rise[-1] * growth)
    plateau = peak * (1 + rng.normal(0, 0.05, 10))
    tail = peak * np.exp(-0.5 * np.arange(1, 10))
    v = np.asarray(np.round(np.r_[base, rise, plateau, tail], 2))
    return Trace(T0 + step_s * np.arange(v.size), v)


# --- displacement: a second, independent family of failing slopes -------------------------


def _coloured(rng: np.random.Generator, t: np.ndarray, sigma: float, tau_s: float
              ) -> np.ndarray:
    """AR(1) noise of standard deviation sigma and correlation time tau_s at times t (GNSS
    solutions are correlated over hours: multipath, troposphere)."""
    if sigma <= 0:
        return np.zeros(t.size)
    phi = np.exp(-np.diff(t, prepend=t[0]) / tau_s)
    e = rng.normal(0.0, sigma, t.size)
    out = np.empty(t.size)
    acc = 0.0
    for i in range(t.size):
        acc = phi[i] * acc + np.sqrt(1.0 - phi[i] ** 2) * e[i]
        out[i] = acc
    return out


@dataclass(frozen=True)
class Slope:
    trace: Trace
    failure_t: float
    meta: dict[str, float]


def saito_slope(seed: int, step_s: float, crack_meter: bool = False) -> Slope:
    """A slope in steady creep (0.2–2 mm/day for 10–25 days) that then accelerates in
    Saito/Fukuzono tertiary creep d v/dt ∝ v^α with α in 1.5–2.5 over 3–30 days: the velocity
    excess grows as (t_f − t)^(−1/(α−1)) from zero at the onset (continuous velocity) to
    20–300 mm/day (log-uniform) at the last reading, which comes 4–8 h before failure.
    GNSS: 1.5–3 mm white noise plus 0.5–1 mm of noise correlated over ~2 h, 2–5 % lost
    samples, 0.3 % outliers of 10–30 mm; a crack meter (crack_meter=True): 0.1 mm noise and
    no correlated part. Independent of simulators/ and of `accelerating_gnss`."""
    rng = np.random.default_rng([seed, 7, int(step_s)])
    creep = rng.uniform(0.2, 2.0)  # mm/day
    pre, span = rng.uniform(10.0, 25.0), rng.uniform(3.0, 30.0)  # days
    alpha = rng.uniform(1.5, 2.5)
    end_h = rng.uniform(4.0, 8.0)
    v_end = float(np.exp(rng.uniform(np.log(20.0), np.log(300.0))))  # mm/day
    p = 1.0 / (alpha - 1.0)
    tf_d = pre + span
    dt_end = end_h / 24.0
    c = v_end / (dt_end ** -p - span ** -p)  # excess velocity c·((t_f−t)^−p − span^−p)
    t = np.arange(T0, T0 + (tf_d - dt_end) * 86400.0, step_s)
    t = t + rng.uniform(0, 0.1 * step_s, t.size)
    d = (t - T0) / 86400.0
    tau = np.maximum(tf_d - d, 1e-9)  # days to failure
    # ∫ c·(τ^−p − span^−p) dt from the onset (τ = span) to τ
    if abs(p - 1.0) < 1e-9:
        excess = c * np.log(span / tau)
    else:
        excess = c * (span ** (1 - p) - tau ** (1 - p)) / (1 - p)
    excess = excess - c * span ** -p * (span - tau)
    x = creep * d + np.where(d > pre, excess, 0.0)
    noise = 0.1 if crack_meter else rng.uniform(1.5, 3.0)
    x = x + rng.normal(0.0, noise, t.size)
    if not crack_meter:
        x = x + _coloured(rng, t, rng.uniform(0.5, 1.0), 2 * 3600.0)
        bad = rng.uniform(0, 1, t.size) < 0.003
        x[bad] += rng.choice([-1.0, 1.0], int(bad.sum())) * rng.uniform(10, 30, int(bad.sum()))
    x[rng.uniform(0, 1, t.size) < rng.uniform(0.02, 0.05)] = np.nan
    return Slope(Trace(t, np.asarray(np.round(x, 2))), T0 + tf_d * 86400.0,
                 {"creep": creep, "alpha": alpha, "span": span, "v_end": v_end,
                  "noise": noise, "end_h": end_h})


def stable_coloured(seed: int, step_s: float, days: float = 30.0) -> Trace:
    """The negative control of `saito_slope`'s noise: the same GNSS noise (white 1.5–3 mm,
    correlated 0.5–1 mm over ~2 h, outliers, lost samples) on a constant creep of
    0.2–2 mm/day that never accelerates."""
    rng = np.random.default_rng([seed, 8, int(step_s)])
    creep = rng.uniform(0.2, 2.0)
    t = np.arange(T0, T0 + days * 86400.0, step_s)
    x = creep * (t - T0) / 86400.0 + rng.normal(0.0, rng.uniform(1.5, 3.0), t.size)
    x = x + _coloured(rng, t, rng.uniform(0.5, 1.0), 2 * 3600.0)
    bad = rng.uniform(0, 1, t.size) < 0.003
    x[bad] += rng.choice([-1.0, 1.0], int(bad.sum())) * rng.uniform(10, 30, int(bad.sum()))
    x[rng.uniform(0, 1, t.size) < rng.uniform(0.02, 0.05)] = np.nan
    return Trace(t, np.asarray(np.round(x, 2)))
