"""False alarms: 30 simulated days of noise, drift, spikes and dropouts on every sensor kind in
the catalogue, stored in PostgreSQL and replayed through the engine hour by hour on the replay
clock, raise no warning. The dropouts raise maintenance alerts, stamped at the device's
offline limit after its last reading whichever hourly tick notices, and cleared at the first
reading after the dropout; nothing else is raised (no data-quality finding either).

Rules are set the way a site would set them (water stages, crack-meter velocity and cumulative
limits), so a spike or a drift that leaked through the quality gate would show."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.engine.service import Engine, EngineConfig
from devices.catalogue import load_catalogue
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings
from simulators.scenarios import QuietFaults, Track, quiet_track

START = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 30
HOUR = 3600.0
DROPOUT_H = 6.0
PERIODIC_H = 6
SITE_KINDS = {"water_level": "RIVER-Q", "water_quality": "RIVER-Q", "air_quality": "TOWN-Q"}
RULES = [
    ("site", "RIVER-Q", {"warning_m": 15.0, "guaranteed_m": 16.5, "historical_max_m": 18.0}),
    ("kind", "crack_meter", {"velocity_mm_per_day": [5, 10, 20, 50],
                             "cumulative_mm": [30, 50, 80, 120]}),
    ("kind", "gnss", {"velocity_mm_per_day": [20, 40, 80, 160],
                      "cumulative_mm": [50, 100, 150, 200]}),
]


def dropout_day(i: int) -> float:
    return 2.0 + (i * 2.0) % (DAYS - 4)


def tracks() -> list[Track]:
    out = []
    for i, kind in enumerate(sorted(load_catalogue().kinds)):
        lo = dropout_day(i)
        faults = QuietFaults(drift_per_day=0.1, spikes=4, spike_size=12.0,
                             dropouts=((lo, lo + DROPOUT_H / 24.0),))
        out.append(quiet_track(f"Q-{kind.upper()}", kind, START, DAYS, faults=faults,
                               seed=100 + i))
    return out


def store(conn: psycopg.Connection, all_tracks: list[Track]) -> None:
    for scope, scope_id, params in RULES:
        conn.execute("INSERT INTO engine_rules (scope, scope_id, params) VALUES (%s, %s, %s)",
                     (scope, scope_id, Jsonb(params)))
    for tr in all_tracks:
        site = SITE_KINDS.get(tr.kind)
        add_device(conn, DeviceSpec(tr.device_id, kind=tr.kind, site_id=site,
                                    hazard_id=None if site else "HP-QUIET",
                                    reporting_interval_s=int(tr.step_s)))
    ids: dict[str, int] = dict(conn.execute(
        "SELECT device_id || '.' || channel, channel_id FROM channels").fetchall())
    rows = []
    for tr in all_tracks:
        for ch, values in tr.values.items():
            cid = ids[f"{tr.device_id}.{ch}"]
            rows += [(cid, tr.time(i), float(v), 0) for i, v in enumerate(values)
                     if math.isfinite(v)]
    write_readings(conn, rows)


@pytest.mark.slow
def test_thirty_quiet_days_raise_only_maintenance_for_the_dropouts(
        db_url: str, conn: psycopg.Connection) -> None:
    all_tracks = tracks()
    store(conn, all_tracks)
    engine = Engine(db_url, EngineConfig(name="quiet"))
    try:
        for h in range(1, DAYS * 24 + 1):
            engine.step(now=START.timestamp() + h * HOUR, periodic=h % PERIODIC_H == 0)
    finally:
        engine.close()
    rows = conn.execute(
        "SELECT a.target_type, a.target_id, a.hazard_kind, e.level, e.data_time, e.evidence, "
        "e.kind "
        "FROM alert_events e JOIN alerts a USING (alert_id) ORDER BY e.data_time, e.event_id"
    ).fetchall()
    warnings = [r[:5] for r in rows if r[2] != "maintenance"]
    assert warnings == []

    got = sorted(((r[1], r[6], r[3], r[4]) for r in rows), key=lambda x: (x[0], x[3]))
    expected = []
    for i, tr in enumerate(all_tracks):
        lo = START + timedelta(days=dropout_day(i))
        hi = lo + timedelta(hours=DROPOUT_H)
        last = max(tr.time(j) for j in range(tr.n) if tr.time(j) < lo)
        offline = max(3 * tr.step_s, 900.0)
        # Every event at the data time that caused it, whichever hourly tick noticed it:
        # silent `offline` after the last reading, reporting again at the first reading
        # after the dropout, auto-resolved 6 h (the quiet period) after that.
        silent = last + timedelta(seconds=offline)
        back = min(tr.time(j) for j in range(tr.n) if tr.time(j) >= hi)
        resolved = back + timedelta(hours=6)
        expected += [(tr.device_id, "opened", 1, silent), (tr.device_id, "cleared", 0, back),
                     (tr.device_id, "resolved", 0, resolved)]
    assert got == sorted(expected, key=lambda x: (x[0], x[3]))
    assert all(r[0] == "device" for r in rows)
    assert {r[5]["reason"] for r in rows if r[6] != "resolved"} == {"silent",
                                                                  "reporting again"}
