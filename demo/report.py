"""What `geowarn demo` reads back and prints after the stream is committed: dead letters by
reason, device health, latest values, hourly rain, and one step of the warning engine.

Every function reads through the same APIs an operator's tools use (geowarn.readings,
devices.health, alerts.lifecycle.queries), so the demo shows what they would show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TextIO

import psycopg

from alerts.engine.service import Engine, EngineConfig
from alerts.lifecycle.queries import list_alerts
from devices.health import device_health
from devices.registry import channel_ids
from geowarn import readings
from simulators.streams import SimDevice


def _say(out: TextIO, text: str = "") -> None:
    print(text, file=out, flush=True)


def dead_letters_since(conn: psycopg.Connection, gateway: str, since: datetime
                       ) -> dict[str, int]:
    rows = conn.execute(
        "SELECT reason, count(*) FROM dead_letters WHERE gateway = %s "
        "AND received_at >= %s GROUP BY reason ORDER BY count(*) DESC, reason",
        (gateway, since)).fetchall()
    return {reason: int(n) for reason, n in rows}


def report_health(conn: psycopg.Connection, device_ids_: Sequence[str], now: datetime,
                  out: TextIO) -> dict[str, int]:
    states: Counter[str] = Counter()
    notes = []
    for device_id, interval in conn.execute(
            "SELECT device_id, reporting_interval_s FROM devices WHERE device_id = ANY(%s) "
            "ORDER BY device_id", (list(device_ids_),)).fetchall():
        health, _row = device_health(conn, device_id, now, interval)
        state = health.state if health else "unknown"
        states[state] += 1
        if health is not None and health.state != "ok":
            notes.append(f"{device_id}: {health.describe()}")
    _say(out, "  device health: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for note in notes:
        _say(out, f"    {note}")
    return dict(states)


def report_latest(conn: psycopg.Connection, devices: Sequence[SimDevice], out: TextIO) -> None:
    shown: set[str] = set()
    for d in devices:
        if d.kind.kind in shown:
            continue
        shown.add(d.kind.kind)
        chans = conn.execute("SELECT channel_id, channel, unit FROM channels "
                             "WHERE device_id = %s ORDER BY channel_id",
                             (d.device_id,)).fetchall()
        latest = readings.latest(conn, [c[0] for c in chans]) if chans else {}
        values = [f"{name.split('.')[-1]} {latest[cid].value:.4g} {unit}"
                  for cid, name, unit in chans if cid in latest]
        when = max((v.ts for v in latest.values()), default=None)
        stamp = f" at {when.astimezone(UTC):%H:%M}Z" if when else ""
        _say(out, f"    {d.device_id:<26} {', '.join(values[:4]) or 'no readings'}{stamp}")


def report_rain(conn: psycopg.Connection, devices: Sequence[SimDevice], now: datetime,
                out: TextIO) -> None:
    gauges = [d for d in devices if d.kind.kind == "rain_gauge"]
    keys = [(d.device_id, d.channel_prefix + "rain") for d in gauges]
    ids = _channel_ids(conn, keys)
    if not ids:
        _say(out, "    no rain gauges")
        return
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=6)
    buckets = readings.downsample(conn, list(ids.values()), start, end, timedelta(hours=1),
                                  "sum", closed="right")
    by_channel: dict[int, dict[datetime, float]] = {}
    for b in buckets:
        by_channel.setdefault(b.channel_id, {})[b.start] = b.value
    hours = [start + timedelta(hours=h) for h in range(6)]
    _say(out, "    hour ending (UTC)          " + "".join(
        f"{(h + timedelta(hours=1)):%H:%M}".rjust(7) for h in hours))
    for (device_id, _key), cid in ids.items():
        row = by_channel.get(cid, {})
        _say(out, f"    {device_id:<26} " + "".join(f"{row.get(h, 0.0):7.1f}" for h in hours)
             + "  mm")
    windows = (timedelta(hours=1), timedelta(hours=3), timedelta(hours=6),
               timedelta(hours=12), timedelta(hours=24))
    sums = readings.accumulations(conn, list(ids.values()), now, windows)
    for (device_id, _key), cid in ids.items():
        text = ", ".join(f"{int(w.total_seconds() // 3600)}h {sums[cid][w]:.1f}"
                         for w in windows)
        _say(out, f"    {device_id:<26} accumulated to now: {text} mm")


def _channel_ids(conn: psycopg.Connection, keys: Sequence[tuple[str, str]]
                 ) -> dict[tuple[str, str], int]:
    found = channel_ids(conn, keys)
    return {k: found[k] for k in keys if k in found}


def run_engine(db_url: str, out: TextIO) -> bool:
    """One step of the warning engine over everything stored; prints the level changes and
    the open alerts. Returns whether it ran."""

    # Its own state name: a deployment's engine ("engine") keeps its own watermarks.
    engine = Engine(db_url, EngineConfig(name="demo", clock="wall"))
    try:
        events = engine.step(periodic=True)
    finally:
        engine.close()
    _say(out, f"  evaluated {engine.setup.n} channels: {len(events)} level changes")
    for e in events[:12]:
        _say(out, f"    {e.target_type} {e.target_id} {e.hazard_kind}: "
                  f"{e.previous_level.name.lower()} -> {e.level.name.lower()} ({e.kind}, "
                  f"data time {e.data_time.astimezone(UTC):%H:%M}Z)")
    if len(events) > 12:
        _say(out, f"    ... and {len(events) - 12} more")
    with psycopg.connect(db_url, autocommit=True) as conn:
        alerts = [a for a in list_alerts(conn, limit=200) if a.status != "resolved"]
    _say(out, f"  unresolved alerts: {len(alerts)}")
    for a in alerts[:8]:
        _say(out, f"    #{a.alert_id} {a.target_type} {a.target_id} {a.hazard_kind}: "
                  f"{a.level.name.lower()} ({a.status})")
    return True
