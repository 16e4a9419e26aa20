"""Benchmark: one engine evaluation over N channels × 24 h of 1-minute data, vectorised
(alerts/ methods) against a plain per-channel Python loop computing the same results.

What one evaluation does, per channel:
- rain gauge (tipping-bucket events, ~10 % of minutes): accumulations over 1/3/6/12/24 h at
  "now" and the county window-table level;
- displacement sensor (1-minute readings): quality flags (hard limits, stuck run, Hampel
  spike), velocity over the last hour by least squares, tangent angle against the first six
  hours' mean rate, and its level.
The loop baseline runs on a subset of channels (it is slow) and is scaled linearly; both
must agree exactly on that subset. Run: .venv/bin/python -m bench.engine_methods
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from alerts.methods.displacement import TangentAngleConfig, tangent_angle, tangent_levels
from alerts.methods.fitting import masked_linear_fit
from alerts.methods.quality import hampel_spikes, stuck_runs
from alerts.methods.ragged import Ragged
from alerts.methods.rainfall import WindowThresholdTable, window_accumulations

MINUTES = 1440
STEP = 60.0
WINDOWS_H = (1.0, 3.0, 6.0, 12.0, 24.0)
TABLE = WindowThresholdTable()
TABLE_COLS = [WINDOWS_H.index(w) for w in TABLE.windows_h]
HARD = (-1000.0, 1000.0)
STUCK = 6
HAMPEL = (3, 3.0, 0.5)
VEL_WINDOW = 60
REF_SAMPLES = 360


def make_data(n: int, seed: int = 1) -> tuple[Ragged, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, MINUTES + 1) * STEP
    wet = rng.random((n, MINUTES)) < 0.1
    rain = np.where(wet, rng.choice([0.2, 0.5, 1.0, 2.0], (n, MINUTES)), 0.0)
    rain[: n // 10, -180:] += 1.5  # a tenth of the gauges under a 3-hour storm
    ch, col = np.nonzero(rain)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(ch, minlength=n))]).astype(np.int64)
    r = Ragged(t[col], rain[ch, col], offsets)
    rate = rng.uniform(0.001, 0.01, (n, 1))
    accel = np.where(np.arange(MINUTES) > 1200, (np.arange(MINUTES) - 1200.0) ** 2, 0.0)
    disp = (rate * np.arange(MINUTES) + rng.uniform(0, 1e-4, (n, 1)) * accel
            + rng.normal(0, 0.05, (n, MINUTES)))
    disp[::50, 700:720] = disp[::50, 699:700]  # some stuck sensors
    disp[::37, 900] += 20.0  # and spikes
    return r, t, disp


def vectorised(r: Ragged, t: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, ...]:
    now = float(t[-1])
    acc = window_accumulations(r, now, WINDOWS_H)
    rain_level = TABLE.levels(acc[:, TABLE_COLS])
    flagged = ((disp < HARD[0]) | (disp > HARD[1]) | stuck_runs(disp, STUCK)
               | hampel_spikes(disp, *HAMPEL))
    ok = ~flagged
    last = np.zeros(disp.shape, dtype=bool)
    last[:, -VEL_WINDOW:] = True
    ref = np.zeros(disp.shape, dtype=bool)
    ref[:, :REF_SAMPLES] = True
    v = masked_linear_fit(t, disp, last & ok).slope
    v_ref = masked_linear_fit(t, disp, ref & ok).slope
    lv = tangent_levels(tangent_angle(v, v_ref), TangentAngleConfig())
    return acc, rain_level, flagged.sum(axis=1), lv


def _ols_slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 3:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def loop_one(times: list[float], rain: list[float], t: list[float], d: list[float]
             ) -> tuple[list[float], int, int, int]:
    now = t[-1]
    acc = [sum(v for tt, v in zip(times, rain, strict=True) if now - w * 3600 < tt <= now)
           for w in WINDOWS_H]
    lvl = 0
    for col, row in zip(TABLE_COLS, TABLE.thresholds_mm, strict=True):
        lvl = max(lvl, sum(1 for thr in row if acc[col] >= thr))
    n = len(d)
    half, k, floor = HAMPEL
    flags = [False] * n
    run = 1
    for i in range(n):
        run = run + 1 if i and d[i] == d[i - 1] else 1
        win = [d[min(max(j, 0), n - 1)] for j in range(i - half, i + half + 1)]
        med = statistics.median(win)
        mad = statistics.median([abs(x - med) for x in win])
        dev = abs(d[i] - med)
        flags[i] = (d[i] < HARD[0] or d[i] > HARD[1] or run >= STUCK
                    or (dev > k * 1.4826 * mad and dev > floor))
    last = [(t[i], d[i]) for i in range(n - VEL_WINDOW, n) if not flags[i]]
    ref = [(t[i], d[i]) for i in range(REF_SAMPLES) if not flags[i]]
    v = _ols_slope([a for a, _ in last], [b for _, b in last])
    v_ref = _ols_slope([a for a, _ in ref], [b for _, b in ref])
    cfg = TangentAngleConfig()
    lv = 0
    if v_ref > 0 and not math.isnan(v):
        ang = math.degrees(math.atan(v / v_ref))
        lv = (int(ang >= cfg.blue_from_deg) + int(ang > cfg.yellow_above_deg)
              + int(ang >= cfg.orange_from_deg) + int(ang >= cfg.red_from_deg))
    return acc, lvl, sum(flags), lv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--channels", type=int, default=10_000)
    p.add_argument("--baseline-channels", type=int, default=200)
    a = p.parse_args(argv)
    r, t, disp = make_data(a.channels)
    t0 = time.perf_counter()
    acc, rain_lv, nflag, lv = vectorised(r, t, disp)
    t_vec = time.perf_counter() - t0
    m = min(a.baseline_channels, a.channels)
    tl, dl = t.tolist(), disp[:m].tolist()
    t0 = time.perf_counter()
    base = [loop_one(r.times[r.offsets[c]:r.offsets[c + 1]].tolist(),
                     r.values[r.offsets[c]:r.offsets[c + 1]].tolist(), tl, dl[c])
            for c in range(m)]
    t_loop = (time.perf_counter() - t0) * a.channels / m
    np.testing.assert_allclose(acc[:m], [b[0] for b in base], atol=1e-9)
    assert rain_lv[:m].tolist() == [b[1] for b in base]
    assert nflag[:m].tolist() == [b[2] for b in base]
    assert lv[:m].tolist() == [b[3] for b in base]
    print(f"channels={a.channels} samples/channel={MINUTES} rain events={r.times.size}")
    print(f"vectorised: {t_vec:.3f} s")
    print(f"python loop: {t_loop:.1f} s (measured on {m} channels, scaled)")
    print(f"ratio: {t_loop / t_vec:.0f}x; levels rain={np.bincount(rain_lv, minlength=5)} "
          f"tangent={np.bincount(lv, minlength=5)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
