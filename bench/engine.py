"""Benchmark of the warning engine (alerts/engine/tick.py and the `geowarn engine` service).

    .venv/bin/python -m bench.engine [--channels 10000] [--latency-trials 200]

What is measured, in one run on this machine:
1. Cold full evaluation: 10,000 channels (half 1-minute rain gauges, half 1-minute crack
   meters, a few of them accelerating, some stuck, some spiking) with 24 h of data: the rings
   filled from 24 h of samples (what a restart does) plus one tick judging every channel.
   The crack meters also hold the displacement memory the engine keeps: a 45-day hourly
   history (alerts/engine/disp_history.py), its first 44 days set directly, the last 24 h
   fed through the history as the tick feeds it.
2. Steady-state tick: one new sample on every channel, median of 10 consecutive ticks; no
   hour closes in them, so displacement only collects its open hour.
3. Hour-closing tick: the tick in which every crack meter's hour closes at once (all sample
   on the same minute: the worst case), so every one is judged on its 45-day history
   (steps, MIDAS velocities at 4 scales, acceleration, reference rate, forecast); the second
   such tick, so that the level changes of the first judged hour are behind it.
4. Baselines in the same run, from the same memory, and the results must agree:
   - rain, the steady tick: a plain per-channel Python loop (window sums, levels, the
     quality gate and hysteresis); levels exactly, evidence to 1e-9 relative;
   - displacement, the hour-closing tick: the same judgement called once per channel
     (alerts/engine/displacement.py add_readings on one row), which is what the vectorised
     call replaces; levels and velocities exactly.
5. Publish-to-alert latency at each `--registry` size against a whole-state-saving engine in
   the same run: bench/engine_latency.py (also runnable alone).
Memory per crack meter of the displacement state is printed (DispState.nbytes_per_row).
Cold start from the store and memory per channel: bench/engine_cold.py.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from typing import Any

import numpy as np

from alerts.engine import displacement as disp_module
from alerts.engine.disp_history import HOUR, H
from alerts.engine.displacement import DispResult, DispState, add_readings
from alerts.engine.ring import MICRO
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import EngineState, Samples, Setup, build_setup, fill_memory, tick
from alerts.methods.levels import classify
from bench import engine_latency
from bench.store import LOCAL_ADMIN

MINUTES = 1440
STEADY = 10
HISTORY_H = H - 24  # hours of displacement history before the 24 h of 1-minute data
# CPU seconds (time.process_time) of the timed calls, in order: the steady ticks, the rain
# loop, the hour-closing tick, its per-channel loop; load-independent beside the wall clock
CPU: list[float] = []
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
    m = MINUTES + STEADY + 122  # and up to the second hour after
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


def fill_displacement(setup: Setup, state: EngineState, t: np.ndarray, values: np.ndarray
                      ) -> None:
    """The crack meters' memory as a long-running engine holds it: 44 days of hourly bins
    (a creep continuing the 1-minute series backwards, with noise), then the 24 h of
    1-minute samples through the history (and the last ones into the screen's ring)."""
    assert state.disp is not None
    rows_ch = setup.group_rows["displacement"]
    rows = np.arange(rows_ch.size)
    hist = state.disp.hist
    first_h = int(np.floor(t[0] / HOUR)) - HISTORY_H
    vals = values[rows_ch]
    rate_h = (vals[:, 600] - vals[:, 0]) / 10.0  # mm per hour over the first 10 hours
    rng = np.random.default_rng(2)
    back = vals[:, :1] - rate_h[:, None] * np.arange(HISTORY_H, 0, -1)[None, :] + \
        rng.normal(0, 0.02, (rows.size, HISTORY_H))
    hours = first_h + np.arange(HISTORY_H)
    hist.bins[:, hours % H] = back.astype(np.float32)
    hist.last_hour[:] = hours[-1]
    state.disp.first_hour[:] = first_h
    state.disp.first_value[:] = back[:, 0]
    for k in range(MINUTES - 1):
        closed = hist.add(rows, np.full(rows.size, t[k]), vals[:, k])
        assert closed.size in (0, rows.size)
    ring = state.rings["displacement"]
    for k in range(MINUTES - 1 - ring.k, MINUTES - 1):
        ring.append(rows, np.full(rows.size, t[k]), vals[:, k], np.zeros(rows.size, np.int8))


def run_ticks(setup: Setup, t: np.ndarray, values: np.ndarray
              ) -> tuple[float, list[float], EngineState, dict[str, Any], dict[str, Any]]:
    state = EngineState.initial(setup)
    rain = setup.group_rows["rainfall"]
    ch = np.repeat(rain, MINUTES - 1)
    started = time.perf_counter()
    fill_memory(setup, state, Samples(ch, np.tile(t[: MINUTES - 1], rain.size),
                                      values[rain, : MINUTES - 1].ravel(),
                                      np.zeros(ch.size, np.int8)))
    fill_displacement(setup, state, t, values)
    state.watermark[:] = t[MINUTES - 2]
    state, _ = tick(setup, state, _column(t, values, MINUTES - 1), float(t[MINUTES - 1]))
    cold = time.perf_counter() - started
    times = []
    before: dict[str, Any] = {}
    for k in range(MINUTES, MINUTES + STEADY):
        if k == MINUTES + STEADY - 1:
            before = _snapshot(setup, state)
        s = _column(t, values, k)
        a, c = time.perf_counter(), time.process_time()
        state, _ = tick(setup, state, s, float(t[k]))
        times.append(time.perf_counter() - a)
        CPU.append(time.process_time() - c)
    after = {"level": state.level.copy(), **{k: v.copy() for k, v in state.evidence.items()}}
    return cold, times, state, before, after


def hour_closing_tick(setup: Setup, state: EngineState, t: np.ndarray, values: np.ndarray
                      ) -> tuple[float, float, int]:
    """Tick on until a tick closes every crack meter's hour; time that tick, then judge the
    same readings channel by channel from a copy of the displacement state taken before it.
    Returns (vectorised tick s, per-channel loop s, channels judged)."""
    calls: list[tuple[DispState, tuple[Any, ...], DispResult]] = []

    def recording(st: DispState, *args: Any) -> DispResult:
        before = copy.deepcopy(st)
        res = add_readings(st, *args)
        calls.append((before, args, res))
        return res

    k = MINUTES + STEADY
    for hour in range(2):  # the second hour close: the first one's level changes are behind
        while np.floor(t[k] / HOUR) == np.floor(t[k - 1] / HOUR):  # cheap ticks to the hour
            state, _ = tick(setup, state, _column(t, values, k), float(t[k]))
            k += 1
        if hour == 0:  # the first hour close
            state, _ = tick(setup, state, _column(t, values, k), float(t[k]))
            k += 1
    disp_module.add_readings = recording  # type: ignore[assignment]  # as the tick calls it
    try:
        s = _column(t, values, k)
        started, c = time.perf_counter(), time.process_time()
        state, _ = tick(setup, state, s, float(t[k]))
        vec_s = time.perf_counter() - started
        CPU.append(time.process_time() - c)
    finally:
        disp_module.add_readings = add_readings
    (st0, (p, ch, rows, tt, vv, qq), res), = calls  # one round: one call
    assert res.rows.size == setup.group_rows["displacement"].size
    started, c = time.perf_counter(), time.process_time()
    loop_r, loop_h = {}, {}
    for i in range(ch.size):  # the same judgement, one channel at a time
        one = add_readings(st0, p, ch[i:i + 1], rows[i:i + 1], tt[i:i + 1], vv[i:i + 1],
                           qq[i:i + 1])
        for r, a, b in zip(one.rows.tolist(), one.raise_level, one.hold_level, strict=True):
            loop_r[r], loop_h[r] = int(a), int(b)
    loop_s = time.perf_counter() - started
    CPU.append(time.process_time() - c)
    assert loop_r == dict(zip(res.rows.tolist(), res.raise_level.tolist(), strict=True))
    assert loop_h == dict(zip(res.rows.tolist(), res.hold_level.tolist(), strict=True))
    assert state.disp is not None
    for name in ("vel", "vel_se", "angle", "accel_since", "v_ref", "fc", "cumulative"):
        np.testing.assert_array_equal(getattr(st0, name), getattr(state.disp, name),
                                      err_msg=name)
    return vec_s, loop_s, int(res.rows.size)


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
    cold, times, state, before, after = run_ticks(setup, t, values)
    k = MINUTES + STEADY - 1
    started, c = time.perf_counter(), time.process_time()
    loop = loop_tick(setup, before, float(t[k]), values[:, k])
    loop_s = time.perf_counter() - started
    CPU.append(time.process_time() - c)
    compare(after, loop, setup.group_rows["rainfall"])
    tick_ms = statistics.median(times) * 1000.0
    print(f"{args.channels:,} channels x 24 h of 1-minute data ({args.channels // 2:,} rain "
          f"gauges, {args.channels - args.channels // 2:,} crack meters)")
    print(f"cold full evaluation (fill rings from 24 h + judge every channel): {cold:.2f} s")
    print(f"steady-state tick (1 new sample per channel): median {tick_ms:.1f} ms, "
          f"min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f} over {len(times)} ticks")
    print(f"plain per-channel Python loop, same tick, same results: {loop_s * 1000:.0f} ms; "
          f"ratio loop / last tick {loop_s / times[-1]:.0f}x", flush=True)
    vec_s, disp_loop_s, judged = hour_closing_tick(setup, state, t, values)
    assert state.disp is not None
    print(f"hour-closing tick ({judged:,} crack meters judged on 45-day hourly histories): "
          f"{vec_s * 1000:.0f} ms; the same judgement per channel, same results: "
          f"{disp_loop_s * 1000:.0f} ms; ratio {disp_loop_s / vec_s:.1f}x; displacement "
          f"state {state.disp.nbytes_per_row:,.0f} B per crack meter", flush=True)
    steady = CPU[:STEADY]
    print(f"CPU time (process_time): steady tick median {statistics.median(steady) * 1000:.1f}"
          f" ms, rain loop {CPU[STEADY] * 1000:.0f} ms (ratio {CPU[STEADY] / steady[-1]:.0f}x);"
          f" hour-closing tick {CPU[STEADY + 1] * 1000:.0f} ms, per-channel displacement "
          f"{CPU[STEADY + 2] * 1000:.0f} ms (ratio {CPU[STEADY + 2] / CPU[STEADY + 1]:.1f}x); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for registry in (int(x) for x in args.registry.split(",") if x):
        print(engine_latency.report(engine_latency.run(args.admin_url, registry,
                                                       args.latency_trials)), flush=True)

if __name__ == "__main__":
    main()
