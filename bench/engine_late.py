"""Per-step cost of fetching and judging late readings (alerts/engine/data.py `load_late`,
alerts/engine/late.py), against the same step without late readings, in one run.

    .venv/bin/python -m bench.engine_late [--channels 2000] [--trials 7] [--late 20]

A registry of `--channels` water-level gauges (10-minute reports, 6 h of history, judged
once) on a fresh database. Then `--trials` rounds, each of two notified engine steps
(alerts/engine/service.py Engine.step searching every channel, as its periodic search does:
the step that moves the arrival mark, so load_late fetches what arrived since the step
before, less 30 s), alternating so the machine's
load falls on both alike:
- baseline: one new reading on every channel, nothing behind the watermarks (load_late still
  runs: readings arrived since the last step, so its per-channel probe of the
  (channel_id, ingested_at) index runs and finds nothing);
- late: the same, and a backlog of 6 readings (the hour they were out: a flood wave above
  the warning stage) from `--late` channels whose live reports resumed in the step before:
  behind their
  watermark, fetched by arrival, the channels cut back and judged again in time order
  (alerts/engine/late_series.py).
Inside each step's transaction the bench also times load_samples and load_late alone (the
reads both steps make, from the same state), and load_late's short path (nothing stored
since the step's snapshot: one probe of the ingested_at index). Wall (time.perf_counter)
and CPU of this process (time.process_time; the server's CPU is in the wall only); medians
over the trials. The late step must change levels only on the late channels' targets.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import data as engine_data
from alerts.engine.service import Engine, EngineConfig
from bench.store import LOCAL_ADMIN, fresh_database
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

T0 = datetime(2026, 6, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
HISTORY = 36  # 6 h of 10-minute readings
OUT = 6  # slots a late channel is out before its backlog arrives
PEAK = (12.6, 13.4, 14.2, 15.0, 15.6, 15.2)  # its readings in them: a flood wave (m)


def _register(conn: psycopg.Connection, n: int) -> list[int]:
    with conn.transaction():
        for i in range(n):
            add_device(conn, DeviceSpec(f"WL{i:05d}", kind="water_level", site_id=f"S{i}",
                                        reporting_interval_s=600))
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES "
                     "('kind', 'water_level', %s)", (Jsonb({
                         "warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.0,
                         "offline_after_s": 30 * 86400}),))
    return [r[0] for r in conn.execute("SELECT channel_id FROM channels WHERE channel = "
                                       "'level' ORDER BY channel_id")]


def _level(i: int, k: int) -> float:
    return 12.0 + 0.01 * ((i * 7 + k * 3) % 11)


def _timed(f: Callable[..., Any], *args: Any, **kw: Any) -> tuple[float, float, Any]:
    w, c = time.perf_counter(), time.process_time()
    out = f(*args, **kw)
    return (time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3, out


def run(admin: str, n: int, trials: int, n_late: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}

    def note(key: str, wall: float, cpu: float) -> None:
        out.setdefault(f"{key} wall", []).append(wall)
        out.setdefault(f"{key} cpu", []).append(cpu)

    with fresh_database(admin, "bench_engine_late") as url, \
            psycopg.connect(url, autocommit=True) as conn:
        ids = _register(conn, n)
        write_readings(conn, [(c, T0 + k * STEP, _level(i, k), 0)
                              for i, c in enumerate(ids) for k in range(HISTORY)])
        engine = Engine(url, EngineConfig(name="bench", clock="data"))
        index = {c: i for i, c in enumerate(ids)}
        # Trial tr's late channels are out for OUT slots, resume the slot before its late
        # step and send the backlog with that step's reading: behind their watermark, with
        # a flood wave above the 15 m warning stage.
        late_of = [ids[tr * n_late:(tr + 1) * n_late] for tr in range(trials)]
        first = HISTORY + OUT + 2  # warm-up slots before: the first outage is live
        late_at = [first + 2 * tr + 1 for tr in range(trials)]
        try:
            engine.step(now=(T0 + HISTORY * STEP).timestamp())
            for k in range(HISTORY, first + 2 * trials):
                tr, late = (k - first) // 2, (k - first) % 2 == 1 and k >= first
                out_now = {c for t2, at in enumerate(late_at) if at - 1 - OUT <= k < at - 1
                           for c in late_of[t2]}
                rows = [(c, T0 + k * STEP, _level(index[c], k), 0) for c in ids
                        if c not in out_now]
                which = late_of[tr] if late else []
                rows += [(c, T0 + (k - 1 - OUT + j) * STEP, h, 0) for c in which
                         for j, h in enumerate(PEAK)]
                write_readings(conn, rows)
                now = (T0 + k * STEP).timestamp() + 30.0
                key = "late" if late else "baseline"
                if k < first:
                    engine.step(now=now)
                    continue
                with engine.conn.transaction():
                    since = engine._arrived_since()
                    w, c, _ = _timed(engine_data.load_samples, engine.conn, engine.setup,
                                     engine.state, now, list(range(engine.setup.n)))
                    note(f"{key}: load_samples", w, c)
                    w, c, got = _timed(engine_data.load_late, engine.conn, engine.setup,
                                       engine.state, since, None)
                    note(f"{key}: load_late", w, c)
                    # what the 30 s arrival overlap fetches again (readings of the step
                    # before, judged already) comes too; the tick counts a time once
                    out.setdefault(f"{key}: load_late rows", []).append(float(got.ch.size))
                    far = datetime.now(UTC) + timedelta(days=1)
                    w, c, _ = _timed(engine_data.load_late, engine.conn, engine.setup,
                                     engine.state, far, None)
                    note(f"{key}: load_late, nothing stored since", w, c)
                w, c, events = _timed(engine.step, now=now)
                note(f"{key}: step", w, c)
                # raised: only the late channels' targets (an earlier backlog's clears later)
                hit = {e.target_id for e in events if e.hazard_kind == "water_level"
                       and e.level > e.previous_level}
                assert hit == {f"S{index[x]}" for x in which}, hit
        finally:
            engine.close()
    return out


def report(r: dict[str, list[float]], n: int, n_late: int, trials: int) -> str:
    lines = [f"{n} water-level channels, {n_late} of them with a 6-reading backlog in the "
             f"late step; medians over {trials} trials (ms)"]
    keys = sorted({k.rsplit(" ", 1)[0] for k in r if not k.endswith(" rows")})
    for k in ("baseline", "late"):
        lines.append(f"  {k}: rows load_late returned (median): "
                     f"{statistics.median(r[k + ': load_late rows']):.0f}")
    for k in keys:
        lines.append(f"  {k:45s} wall {statistics.median(r[k + ' wall']):8.1f}   "
                     f"cpu {statistics.median(r[k + ' cpu']):8.1f}")
    b, lt = (statistics.median(r["baseline: step cpu"]), statistics.median(r["late: step cpu"]))
    lines.append(f"  late step / baseline step CPU: {lt / b:.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--late", type=int, default=20)
    ap.add_argument("--admin", default=LOCAL_ADMIN)
    a = ap.parse_args()
    print(report(run(a.admin, a.channels, a.trials, a.late), a.channels, a.late, a.trials))


if __name__ == "__main__":
    main()
