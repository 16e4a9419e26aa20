"""Device health: the pure assessment and the gateway's writes against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices import health, registry
from devices.health import assess
from devices.messages import Presence, StatusReport
from devices.registry import DeviceSpec
from geowarn.errors import InvalidInput

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("gap_s", "online", "state"), [
    (500, True, "ok"), (900, None, "ok"), (901, True, "late"), (1800, None, "late"),
    (1801, True, "silent"), (901, False, "offline"), (500, False, "ok"),
])
def test_assess_states(gap_s, online, state):
    h = assess(NOW, NOW - timedelta(seconds=gap_s), 600, online)
    assert h.state == state
    assert h.gap_s == gap_s and h.gap_intervals == pytest.approx(gap_s / 600)


def test_assess_never_reported_and_bad_arguments():
    assert assess(NOW, None, 600, None).state == "silent"
    assert assess(NOW, None, 600, False).state == "offline"
    assert "never reported" in assess(NOW, None, 600, True).describe()
    with pytest.raises(InvalidInput, match="reporting interval must be positive"):
        assess(NOW, NOW, 0, None)


def test_presence_status_and_readings_are_recorded_newest_wins(conn):
    registry.add_device(conn, DeviceSpec("H1", kind="crack_meter"))
    registry.add_device(conn, DeviceSpec("H2", kind="crack_meter"))
    health.record_presence(conn, Presence("H1", True, NOW))
    health.record_presence(conn, Presence("H1", False, NOW - timedelta(minutes=5)))  # stale
    health.record_presence(conn, Presence("ghost", True, NOW))  # unknown: skipped
    row = health.health_row(conn, "H1")
    assert row is not None and row["online"] is True and row["presence_at"] == NOW

    health.record_status(conn, StatusReport("H1", NOW, battery_pct=87.0, signal_dbm=-71,
                                            firmware="1.4.2", sensor_state={"L1_LF_1": 0}))
    health.record_status(conn, StatusReport("H1", NOW - timedelta(hours=1), battery_pct=20.0))
    row = health.health_row(conn, "H1")
    assert row is not None
    assert (row["battery_pct"], row["firmware"], row["sensor_state"]) == \
        (87.0, "1.4.2", {"L1_LF_1": 0})

    health.touch_last_reading(conn, {"H1": NOW - timedelta(minutes=20), "H2": NOW,
                                     "ghost": NOW})
    health.touch_last_reading(conn, {"H1": NOW - timedelta(hours=2)})  # older: no effect
    h, row = health.device_health(conn, "H1", NOW, 600)
    assert row["last_reading_at"] == NOW - timedelta(minutes=20)
    assert h is not None and h.state == "late"
    h2, _ = health.device_health(conn, "H2", NOW, 600)
    assert h2 is not None and h2.state == "ok"
    health.record_presence(conn, Presence("H1", False, NOW + timedelta(seconds=1)))
    h, _ = health.device_health(conn, "H1", NOW, 600)
    assert h is not None and h.state == "offline"
    assert conn.execute("SELECT count(*) FROM device_health").fetchone() == (2,)


def test_a_stored_future_presence_or_status_never_freezes_health(conn):
    """Rows stamped in 2099 (stored before such times were refused at decode) must not win
    over every later real update."""
    registry.add_device(conn, DeviceSpec(device_id="FROZEN-1", kind="crack_meter"))
    future = datetime(2099, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC).replace(microsecond=0)
    health.record_presence(conn, Presence("FROZEN-1", online=True, ts=future))
    health.record_status(conn, StatusReport("FROZEN-1", ts=future, battery_pct=5.0))
    health.record_presence(conn, Presence("FROZEN-1", online=False, ts=now))
    health.record_status(conn, StatusReport("FROZEN-1", ts=now, battery_pct=90.0))
    row = health.health_row(conn, "FROZEN-1")
    assert row is not None
    assert (row["online"], row["presence_at"]) == (False, now)
    assert (row["battery_pct"], row["status_at"]) == (90.0, now)
    # Within the clock-skew window the newest still wins as before.
    ahead = now + timedelta(seconds=60)
    health.record_presence(conn, Presence("FROZEN-1", online=True, ts=ahead))
    health.record_presence(conn, Presence("FROZEN-1", online=False, ts=now))
    latest = health.health_row(conn, "FROZEN-1")
    assert latest is not None and latest["online"] is True
