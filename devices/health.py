"""Device health: is each device reporting as often as it should, and is it connected?

`assess` is pure. It tells four states apart because they call for different responses:
- ok: the last reading is within `late_after` reporting intervals;
- late: a reading is overdue but not yet alarming;
- silent: beyond `silent_after` intervals (or never reported) while the broker does not say
  the device is gone: it is connected but its sensor or firmware has stopped producing data;
- offline: overdue and the device's presence (MQTT last will) says disconnected: power or
  communications. A device that sleeps between uploads is disconnected most of the time, so
  presence alone never makes a device offline while its readings arrive on time.

The I/O functions are what the ingest gateway calls; each is one statement, and older
messages (a retained presence replayed on reconnect, a delayed status) never overwrite newer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from devices.messages import Presence, StatusReport
from geowarn.errors import InvalidInput

HealthState = Literal["ok", "late", "silent", "offline"]

# What a duty officer should send a technician for, beside a reading being overdue.
LOW_BATTERY_PCT = 20.0
WEAK_SIGNAL_DBM = -105.0  # below this a cellular modem drops uploads (about 1-2 bars)
_SENSOR_FAULTS = {-1: "power fault", -2: "data error", -3: "no data"}  # national S1_ZT_1


@dataclass(frozen=True)
class Health:
    state: HealthState
    gap_s: float | None  # seconds since the last reading; None if it never reported
    gap_intervals: float | None  # the same in reporting intervals

    def describe(self) -> str:
        if self.gap_s is None:
            return f"{self.state} (never reported)"
        return f"{self.state} (last reading {self.gap_s:.0f} s ago, " \
               f"{self.gap_intervals:.1f} intervals)"


def assess(now: datetime, last_reading_at: datetime | None, reporting_interval_s: float,
           presence_online: bool | None, *, late_after: float = 1.5,
           silent_after: float = 3.0) -> Health:
    """Classify a device's health; `presence_online` is None when the device has no presence."""
    if reporting_interval_s <= 0:
        raise InvalidInput(f"reporting interval must be positive, got {reporting_interval_s}")
    if not 0 < late_after <= silent_after:
        raise InvalidInput("need 0 < late_after <= silent_after")
    if last_reading_at is None:
        return Health("offline" if presence_online is False else "silent", None, None)
    gap = max(0.0, (now - last_reading_at).total_seconds())
    intervals = gap / reporting_interval_s
    if intervals <= late_after:
        state: HealthState = "ok"
    elif presence_online is False:
        state = "offline"
    elif intervals <= silent_after:
        state = "late"
    else:
        state = "silent"
    return Health(state, gap, intervals)


def device_problems(row: Mapping[str, Any]) -> list[str]:
    """What a stored health row says needs attention (pure): low battery, weak signal,
    sensors the logger reports as faulty. Empty when nothing is known to be wrong."""
    problems: list[str] = []
    pct = row.get("battery_pct")
    if pct is not None and pct < LOW_BATTERY_PCT:
        problems.append(f"low battery {pct:.0f}%")
    dbm = row.get("signal_dbm")
    if dbm is not None and dbm < WEAK_SIGNAL_DBM:
        problems.append(f"weak signal {dbm:.0f} dBm")
    for sensor, code in sorted(dict(row.get("sensor_state") or {}).items()):
        if code in _SENSOR_FAULTS:
            problems.append(f"{sensor} {_SENSOR_FAULTS[code]}")
    return problems


def record_presence(conn: psycopg.Connection, presence: Presence, *,
                    max_future_s: float = 300.0) -> None:
    """Store an online/offline event; an event older than the stored one is ignored, unless
    the stored one lies beyond the clock-skew window (stamped in the future by a bad clock
    before such times were refused): it must not freeze the device's health."""
    conn.execute(
        """INSERT INTO device_health (device_id, online, presence_at, last_seen)
           SELECT d.device_id, %(online)s, coalesce(%(ts)s, now()),
                  CASE WHEN %(online)s THEN coalesce(%(ts)s, now()) END
           FROM devices d WHERE d.device_id = %(id)s
           ON CONFLICT (device_id) DO UPDATE
           SET online = EXCLUDED.online, presence_at = EXCLUDED.presence_at,
               last_seen = greatest(device_health.last_seen, EXCLUDED.last_seen)
           WHERE device_health.presence_at IS NULL
              OR device_health.presence_at <= EXCLUDED.presence_at
              OR device_health.presence_at > now() + make_interval(secs => %(skew)s)""",
        {"id": presence.device_id, "online": presence.online, "ts": presence.ts,
         "skew": max_future_s})


_STATUS_FIELDS = ("battery_pct", "battery_v", "supply_v", "signal_dbm", "temperature_c",
                  "firmware")


def record_status(conn: psycopg.Connection, status: StatusReport, *,
                  max_future_s: float = 300.0) -> None:
    """Store a status report unless a newer one is already stored (a stored one beyond the
    clock-skew window does not count as newer, as for presence)."""
    values: dict[str, Any] = {f: getattr(status, f) for f in _STATUS_FIELDS}
    values.update(id=status.device_id, ts=status.ts, skew=max_future_s,
                  state=json.dumps(dict(status.sensor_state)))
    sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in _STATUS_FIELDS)
    conn.execute(
        f"""INSERT INTO device_health (device_id, {", ".join(_STATUS_FIELDS)}, sensor_state,
                                       status_at, last_seen)
            SELECT d.device_id, {", ".join(f"%({f})s" for f in _STATUS_FIELDS)},
                   %(state)s::jsonb, %(ts)s, %(ts)s
            FROM devices d WHERE d.device_id = %(id)s
            ON CONFLICT (device_id) DO UPDATE
            SET {sets}, sensor_state = EXCLUDED.sensor_state, status_at = EXCLUDED.status_at,
                last_seen = greatest(device_health.last_seen, EXCLUDED.last_seen)
            WHERE device_health.status_at IS NULL
               OR device_health.status_at <= EXCLUDED.status_at
               OR device_health.status_at > now() + make_interval(secs => %(skew)s)""", values)


def touch_last_reading(conn: psycopg.Connection, latest: Mapping[str, datetime]) -> None:
    """Advance last_reading_at (and last_seen) for many devices in one statement.

    Unknown device ids are skipped. Rows are written in device-id order so that two
    gateways' batches cannot deadlock on each other.
    """
    if not latest:
        return
    ids = sorted(latest)
    conn.execute(
        """INSERT INTO device_health (device_id, last_reading_at, last_seen)
           SELECT u.device_id, u.ts, u.ts
           FROM unnest(%s::text[], %s::timestamptz[]) AS u(device_id, ts)
           JOIN devices d USING (device_id) ORDER BY u.device_id
           ON CONFLICT (device_id) DO UPDATE
           SET last_reading_at = greatest(device_health.last_reading_at,
                                          EXCLUDED.last_reading_at),
               last_seen = greatest(device_health.last_seen, EXCLUDED.last_seen)""",
        (ids, [latest[i] for i in ids]))


def health_row(conn: psycopg.Connection, device_id: str) -> dict[str, Any] | None:
    """The stored health row of a device (None if nothing was ever heard from it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM device_health WHERE device_id = %s",
                           (device_id,)).fetchone()


def health_rows(conn: psycopg.Connection, device_ids: Sequence[str]
                ) -> dict[str, dict[str, Any]]:
    """Stored health rows of many devices in one query (absent: never heard from)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["device_id"]: r for r in cur.execute(
            "SELECT * FROM device_health WHERE device_id = ANY(%s)", (list(device_ids),))}


def device_health(conn: psycopg.Connection, device_id: str, now: datetime,
                  reporting_interval_s: float | None) -> tuple[Health | None, dict[str, Any]]:
    """(assessment, stored row) for display; no assessment without a reporting interval."""
    row = health_row(conn, device_id) or {}
    if not reporting_interval_s:
        return None, row
    return assess(now, row.get("last_reading_at"), reporting_interval_s, row.get("online")), row
