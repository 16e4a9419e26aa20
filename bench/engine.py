"""Benchmark of the warning engine (alerts/engine/tick.py and the `geowarn engine` service).

    .venv/bin/python -m bench.engine [--channels 10000] [--latency-trials 200]

What is measured, in one run on this machine:
1. Cold full evaluation: 10,000 channels (half 1-minute rain gauges, half 1-minute crack
   meters, a few of them accelerating, some stuck, some spiking) with 24 h of data: the rings
   filled from 24 h of samples (what a restart does) plus one tick judging every channel.
2. Steady-state tick: one new sample on every channel, median of 10 consecutive ticks.
3. The same last tick computed by a plain per-channel Python loop from the same memory (the
   loop is what the vectorised tick replaces: per channel, window sums, quality checks,
   least-squares fits, the acceleration check, levels, the quality gate and hysteresis).
   The two must agree (levels exactly, evidence to 1e-9 relative); the ratio is reported.
   The loop covers the rain gauges: displacement is now judged once per closed hour on each
   channel's hourly history (alerts/engine/displacement.py), and its loop baseline over that
   history is still to be written; the crack meters still cost their share of every tick.
4. Publish-to-alert latency at each `--registry` size against a whole-state-saving engine in
   the same run: bench/engine_latency.py (also runnable alone).
Cold start from the store and memory per channel: bench/engine_cold.py.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import numpy as np

from alerts.engine.ring import MICRO
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import EngineState, Samples, Setup, build_setup, fill_memory, tick
from alerts.methods.levels import classify
from bench import engine_latency
from bench.store import LOCAL_ADMIN

MINUTES = 1440
STEADY = 10
T0 = 1_750_000_000.0
CRACK_RULES = {"reference_rate_mm_per_day": 2.0, "baseline": 0.0,
               "velocity_mm_per_day": [20, 40, 80, 160], "cumulative_mm": [50, 100, 150, 200]}


def make_engine(n: int) -> tuple[Setup, np.ndarray, np.ndarray]:
    """Setup and (channels, MINUTES + STEADY) values; rain first, then crack meters."""
    half = n // 2
    chs = [ChannelInfo(i + 1, f"R{i}", "rain_gauge", "rain", f"HP{i % 500}", None, 60.0)
           for i in range(half)]
    chs += [ChannelInfo(half + i + 1, f"C{i}", "crack_meter", "opening", f"HP{i % 500}", None,
                        60.0) for i in range(n - half)]
    setup = build_setup(chs, resolve(chs, {("kind", "crack_meter"): CRACK_RULES}))
    rng = np.random.default_rng(1)
    m = MINUTES + STEADY
    t = T0 + np.arange(m) * 60.0
    rain = np.where(rng.random((half, m)) < 0.1, rng.choice([0.2, 0.5, 1.0, 2.0], (half, m)),
                    0.0)
    rain[: half // 10, -200:] += 1.5  # a tenth of the gauges under a storm
    minutes = np.arange(m, dtype=np.float64)
    disp = rng.uniform(0.001, 0.01, (n - half, 1)) * minutes + rng.normal(0, 0.05,
                                                                         (n - half, m))
    fail = MINUTES + 60.0  # 1 % of the slopes accelerate toward failure an hour after the end
    acc = slice(0, (n - half) // 100)
    disp[acc] += 2.0 * np.log(fail / np.maximum(fail - minutes, 1e-9))
    disp[::50, 700:720] = disp[::50, 699:700]  # stuck sensors
    disp[::37, -3] += 20.0  # spikes inside the steady ticks
    return setup, t, np.round(np.concatenate([rain, disp]), 4)


def run_ticks(setup: Setup, t: np.ndarray, values: np.ndarray
              ) -> tuple[float, list[float], EngineState, dict[str, Any], dict[str, Any]]:
    n = setup.n
    state = EngineState.initial(setup)
    ch = np.repeat(np.arange(n), MINUTES - 1)
    started = time.perf_counter()
    fill_memory(setup, state, Samples(ch, np.tile(t[: MINUTES - 1], n),
                                      values[:, : MINUTES - 1].ravel(), np.zeros(ch.size, np.int8)))
    state.watermark[:] = t[MINUTES - 2]
    state, _ = tick(setup, state, _column(t, values, MINUTES - 1), float(t[MINUTES - 1]))
    cold = time.perf_counter() - started
    times = []
    before: dict[str, Any] = {}
    for k in range(MINUTES, MINUTES + STEADY):
        if k == MINUTES + STEADY - 1:
            before = _snapshot(setup, state)
        s = _column(t, values, k)
        a = time.perf_counter()
        state, _ = tick(setup, state, s, float(t[k]))
        times.append(time.perf_counter() - a)
    after = {"level": state.level.copy(), **{k: v.copy() for k, v in state.evidence.items()}}
    return cold, times, state, before, after


def _column(t: np.ndarray, values: np.ndarray, k: int) -> Samples:
    n = values.shape[0]
    return Samples(np.arange(n), np.full(n, t[k]), values[:, k].copy(), np.zeros(n, np.int8))


def _snapshot(setup: Setup, state: EngineState) -> dict[str, Any]:
    """What the loop starts from: each channel's memory as Python lists, and its state."""
    rain_ring = state.rings["rainfall"]
    rows_r = np.arange(setup.group_rows["rainfall"].size)
    tr, vr, qr = rain_ring.last(rows_r, rain_ring.k)
    return {"rain": [(a[np.isfinite(a)].tolist(), b[np.isfinite(a)].tolist(),
                      c[np.isfinite(a)].tolist()) for a, b, c in zip(tr, vr, qr, strict=True)],
            **{k: getattr(state, k).copy() for k in ("level", "lower_since", "clean_raise",
                                                     "clean_hold")}}


# ---- the plain per-channel loop -------------------------------------------------------

def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def _fit(ts: list[float], ys: list[float]) -> tuple[float, int]:
    pts = [(a, b) for a, b in zip(ts, ys, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pts) < 2:
        return math.nan, len(pts)
    mx = sum(a for a, _ in pts) / len(pts)
    my = sum(b for _, b in pts) / len(pts)
    sxx = sum((a - mx) ** 2 for a, _ in pts)
    return (sum((a - mx) * (b - my) for a, b in pts) / sxx if sxx > 0 else math.nan), len(pts)


def _level(x: float, thr: Any) -> int:
    return int(classify(np.array([x]), np.asarray(thr))[0])


def loop_tick(setup: Setup, snap: dict[str, Any], t_new: float, v_new: np.ndarray
              ) -> dict[str, Any]:
    p = setup.p
    level = snap["level"].copy()
    ev: dict[str, Any] = {"accumulations_mm": {}}
    for row, c in enumerate(setup.group_rows["rainfall"].tolist()):
        ts, vs, qs = snap["rain"][row]
        ts, vs, qs = ts + [t_new], vs + [float(v_new[c])], qs + [0]
        acc = []
        for w in (3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 24 * 3600.0, 72 * 3600.0):
            micro = sum(round(v * MICRO) for t, v, q in zip(ts, vs, qs, strict=True)
                        if t > t_new - w and q < 2)
            acc.append(micro / MICRO)
        table, ratio = p["rain_table_mm"][c], p["clear_ratio"][c]
        r = max(_level(a, table[j]) for j, a in enumerate(acc))
        h = max(max(_level(a, table[j] - (1 - ratio) * np.abs(table[j]))
                    for j, a in enumerate(acc)), r)
        ev["accumulations_mm"][c] = acc
        level[c] = _gate_and_step(snap, setup, c, r, h, False, t_new)
    return {"level": level, **ev}


def _gate_and_step(snap: dict[str, Any], setup: Setup, c: int, r: int, h: int,
                   flagged: bool, now: float) -> int:
    if flagged:
        r, h = min(r, int(snap["clean_raise"][c])), min(h, int(snap["clean_hold"][c]))
    h = max(h, r)
    cur = int(snap["level"][c])
    if r > cur:
        return r
    if h < cur:
        since = snap["lower_since"][c]
        since = now if math.isnan(since) else since
        return h if now - since >= setup.p["dwell_s"][c] else cur
    return cur


def compare(vec: dict[str, Any], loop: dict[str, Any], rows: np.ndarray) -> None:
    """Levels of `rows` (the channels the loop judges) and their evidence must agree."""
    if not np.array_equal(vec["level"][rows], loop["level"][rows]):
        bad = rows[vec["level"][rows] != loop["level"][rows]]
        raise AssertionError(f"levels differ on {bad.size} channels, e.g. {bad[:5]}")
    for name in ("accumulations_mm",):
        for c, want in loop[name].items():
            np.testing.assert_allclose(vec[name][c], want, rtol=1e-9, atol=1e-9,
                                       equal_nan=True, err_msg=f"{name} of channel {c}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--latency-trials", type=int, default=200)
    parser.add_argument("--registry", default="2000,10000,30000",
                        help="background devices: one latency run (bench/engine_latency.py) "
                             "per comma-separated count; empty: none")
    parser.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                              LOCAL_ADMIN))
    args = parser.parse_args()
    setup, t, values = make_engine(args.channels)
    cold, times, _, before, after = run_ticks(setup, t, values)
    k = MINUTES + STEADY - 1
    started = time.perf_counter()
    loop = loop_tick(setup, before, float(t[k]), values[:, k])
    loop_s = time.perf_counter() - started
    compare(after, loop, setup.group_rows["rainfall"])
    tick_ms = statistics.median(times) * 1000.0
    print(f"{args.channels:,} channels x 24 h of 1-minute data ({args.channels // 2:,} rain "
          f"gauges, {args.channels - args.channels // 2:,} crack meters)")
    print(f"cold full evaluation (fill rings from 24 h + judge every channel): {cold:.2f} s")
    print(f"steady-state tick (1 new sample per channel): median {tick_ms:.1f} ms, "
          f"min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f} over {len(times)} ticks")
    print(f"plain per-channel Python loop, same tick, same results: {loop_s * 1000:.0f} ms; "
          f"ratio loop / last tick {loop_s / times[-1]:.0f}x", flush=True)
    for registry in (int(x) for x in args.registry.split(",") if x):
        print(engine_latency.report(engine_latency.run(args.admin_url, registry,
                                                       args.latency_trials)), flush=True)

if __name__ == "__main__":
    main()
