"""A device silent inside its maintenance window raises nothing: its silence clock restarts
at the window's end (alerts/engine/silence.py), so it is silent only if it is still quiet
offline_after_s after the window ends. Through the engine against the real database, with the
windows set as `geowarn devices maintenance` sets them (devices/maintenance.py), both in one
catch-up step and living through the data clock step by step (the same events either way).

River gauges every 10 minutes: offline_after_s is 3 intervals = 30 minutes (the default,
alerts/engine/rules.py). Every gauge reports from 00:00 until it stops; the hand-computed
moment of each device's silence is in EXPECTED."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine.service import Engine, EngineConfig
from devices import maintenance
from devices.registry import DeviceSpec, add_device
from geowarn.readings import write_readings

T0 = datetime(2026, 6, 1, tzinfo=UTC)
STEP_S = 600
OFFLINE = timedelta(minutes=30)  # 3 × 600 s
END = timedelta(hours=16)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


# device: (reporting spans (from, to) in hours, maintenance window (from, to) in hours or None)
DEVICES: dict[str, tuple[tuple[tuple[float, float], ...], tuple[float, float] | None]] = {
    # Stops at 10:00 inside a 09–14 window and is back at 13:00, still inside: nothing.
    "WL-IN": (((0, 10), (13, 16)), (9, 14)),
    # Stops at 10:00 inside a 09–12 window, back at 12:20 (before 12:00 + 30 min): nothing.
    "WL-AFTER": (((0, 10), (12 + 1 / 3, 16)), (9, 12)),
    # Stops at 10:00 inside a 09–12 window and stays quiet until 14:00: silent from 12:30.
    "WL-PAST": (((0, 10), (14, 16)), (9, 12)),
    # Silent before its window began (08:00 + 30 min, window 09–12): reported at 08:30.
    "WL-BEFORE": (((0, 8), (14, 16)), (9, 12)),
    # The control: the same silence as WL-PAST without a window is silent from 10:30.
    "WL-CTRL": (((0, 10), (14, 16)), None),
}
# (opened at, reporting again at) per device; devices missing here have no maintenance alert.
EXPECTED = {
    "WL-PAST": (T0 + h(12) + OFFLINE, T0 + h(14)),
    "WL-BEFORE": (T0 + h(8) + OFFLINE, T0 + h(14)),
    "WL-CTRL": (T0 + h(10) + OFFLINE, T0 + h(14)),
}


def setup_devices(conn: psycopg.Connection) -> None:
    for dev, (spans, window) in DEVICES.items():
        add_device(conn, DeviceSpec(dev, kind="water_level", site_id=f"RIVER-{dev}",
                                    reporting_interval_s=STEP_S))
        (cid,) = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s",
                              (dev,)).fetchone() or (None,)
        rows = []
        for a, b in spans:
            k0, k1 = round(a * 3600 / STEP_S), round(b * 3600 / STEP_S)
            # A gently varying stage (no stuck-value finding); no stages set, so no levels.
            rows += [(cid, T0 + timedelta(seconds=k * STEP_S), 12.0 + 0.01 * (k % 7), 0)
                     for k in range(k0, k1 + 1)]
        write_readings(conn, rows)
        if window is not None:
            maintenance.add_window(conn, dev, T0 + h(window[0]), T0 + h(window[1]),
                                   "gauge cleaned", actor="test")
    conn.commit()


def maintenance_events(conn: psycopg.Connection) -> dict[str, list[tuple[int, datetime]]]:
    out: dict[str, list[tuple[int, datetime]]] = {}
    for dev, level, when in conn.execute(
            "SELECT a.target_id, e.level, e.data_time FROM alert_events e JOIN alerts a "
            "USING (alert_id) WHERE a.hazard_kind = 'maintenance' "
            "ORDER BY e.data_time, e.event_id"):
        out.setdefault(dev, []).append((int(level), when))
    return out


@pytest.mark.parametrize("mode", ["catch-up", "living"])
def test_silence_inside_a_window_raises_nothing_and_the_clock_restarts_at_its_end(
        db_url: str, conn: psycopg.Connection, mode: str) -> None:
    setup_devices(conn)
    engine = Engine(db_url, EngineConfig(clock="data", quiet_s=1000 * 3600.0))
    try:
        if mode == "catch-up":
            engine.step()
        else:
            for k in range(1, int(END.total_seconds()) // STEP_S + 1):
                engine.step(now=(T0 + timedelta(seconds=k * STEP_S)).timestamp())
    finally:
        engine.close()
    got = maintenance_events(conn)
    assert set(got) == set(EXPECTED), got
    for dev, (opened, back) in EXPECTED.items():
        assert got[dev] == [(1, opened), (0, back)], (dev, got[dev])
