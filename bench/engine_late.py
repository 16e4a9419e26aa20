"""Per-step cost of fetching and judging late readings (alerts/engine/data.py `load_late`,
alerts/engine/late.py), against the same step without late readings, in one run.

    .venv/bin/python -m bench.engine_late [--channels 2000] [--trials 7] [--late 20]

A registry of `--channels` water-level gauges (10-minute reports, 6 h of history, judged
once) on a fresh database. Then `--trials` rounds, each of two notified engine steps
(alerts/engine/service.py Engine.step searching every channel, as its periodic search does:
the step that moves every channel's arrival mark, alerts/engine/arrival.py), alternating so
the machine's load falls on both alike:
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
since the step's snapshot: one probe of the ingested_at index). load_late twice, in turns
first: from the engine's arrival marks (each channel from its last look, the mark bounded
by the transactions open then) and, the baseline in the same run, as before issue 7's
change: from the last search step's start less 30 s (ARRIVAL_OVERLAP_S; here every step
searches, so that is the step before; a service's notified steps read from the last
search step, up to search_period_s + 30 s back). Wall (time.perf_counter)
and CPU of this process (time.process_time; the server's CPU is in the wall only); medians
over the trials. The late step must change levels only on the late channels' targets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import data as engine_data
from alerts.engine.arrival import ARRIVAL_OVERLAP_S
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


def _server_cpu_s(pid: int) -> float:
    """CPU time (user + system, s) of a local server backend: /proc/PID/stat (0 when the
    server runs elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(admin: str, n: int, trials: int, n_late: int
        ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per measured key: wall and CPU of this process (ms) per trial, and the rows
    load_late returned; and the engine's server backend CPU (ms) per load_late call."""
    out: dict[str, list[float]] = {}
    backend: dict[str, list[float]] = {}

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

        def db_now() -> datetime:  # just before a step's transaction starts
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            when: datetime = row[0]
            return when

        pid = engine.conn.info.backend_pid
        try:
            started = db_now()
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
                    started = db_now()
                    engine.step(now=now)
                    continue
                with engine.conn.transaction():
                    before = started - timedelta(seconds=ARRIVAL_OVERLAP_S)
                    w, c, _ = _timed(engine_data.load_samples, engine.conn, engine.setup,
                                     engine.state, now, list(range(engine.setup.n)))
                    note(f"{key}: load_samples", w, c)
                    ways = [("load_late", engine.arrivals.at),
                            ("load_late, before (last search - 30 s)", before)]
                    for name, since in ways[::1 if k % 4 < 2 else -1]:
                        b0 = _server_cpu_s(pid)
                        w, c, got = _timed(engine_data.load_late, engine.conn, engine.setup,
                                           engine.state, since, None)
                        note(f"{key}: {name}", w, c)
                        backend.setdefault(f"{key}: {name}", []).append(
                            (_server_cpu_s(pid) - b0) * 1e3)
                        # what an overlap fetches again (readings judged already) comes
                        # too; the tick counts a time once
                        out.setdefault(f"{key}: {name} rows", []).append(float(got.ch.size))
                    far = datetime.now(UTC) + timedelta(days=1)
                    w, c, _ = _timed(engine_data.load_late, engine.conn, engine.setup,
                                     engine.state, far, None)
                    note(f"{key}: load_late, nothing stored since", w, c)
                started = db_now()
                w, c, events = _timed(engine.step, now=now)
                note(f"{key}: step", w, c)
                # raised: only the late channels' targets (an earlier backlog's clears later)
                hit = {e.target_id for e in events if e.hazard_kind == "water_level"
                       and e.level > e.previous_level}
                assert hit == {f"S{index[x]}" for x in which}, hit
        finally:
            engine.close()
    return out, backend


def report(got: tuple[dict[str, list[float]], dict[str, list[float]]], n: int, n_late: int,
           trials: int) -> str:
    r, backend = got
    lines = [f"{n} water-level channels, {n_late} of them with a 6-reading backlog in the "
             f"late step; medians over {trials} trials (ms)"]
    keys = sorted({k.rsplit(" ", 1)[0] for k in r if not k.endswith(" rows")})
    for k in ("baseline", "late"):
        for name in ("load_late", "load_late, before (last search - 30 s)"):
            lines.append(f"  {k}: rows {name} returned (median): "
                         f"{statistics.median(r[f'{k}: {name} rows']):.0f}")
    for k in keys:
        lines.append(f"  {k:45s} wall {statistics.median(r[k + ' wall']):8.1f}   "
                     f"cpu {statistics.median(r[k + ' cpu']):8.1f}")
    b, lt = (statistics.median(r["baseline: step cpu"]), statistics.median(r["late: step cpu"]))
    lines.append(f"  late step / baseline step CPU: {lt / b:.2f}")
    for k in ("baseline", "late"):
        new, old = (statistics.median(r[f"{k}: {n} wall"])
                    for n in ("load_late", "load_late, before (last search - 30 s)"))
        lines.append(f"  {k}: load_late wall, arrival marks / before: {new / old:.2f}")
    for k, v in sorted(backend.items()):
        lines.append(f"  {k:45s} server backend CPU {statistics.median(v):8.1f} "
                     f"(sum over trials {sum(v):.0f})")
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
