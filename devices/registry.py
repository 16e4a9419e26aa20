"""The device registry: which devices exist, what they measure, where they are, and how their
channels are calibrated. Functions take a psycopg connection and run their writes in one
transaction (a savepoint when the caller already has one open), writing audit_log rows.

National-profile loggers host several sensors whose ids ("L1_LF_1") map to catalogue kinds by
their class_type code; their channels are either registered up front (DeviceSpec.sensors) or
learnt the first time the gateway sees a catalogue sensor (`learn_channel`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from devices import credentials
from devices.catalogue import Catalogue, load_catalogue
from devices.device_lock import lock_device
from devices.messages import Calibration, DeviceInfo, DeviceStatus, Profile
from devices.text import quoted
from geowarn.errors import InvalidInput, NotFound

# \Z, not $: `$` also matches before a trailing newline, and "X\n" is no device id.
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
NATIONAL_SENSOR_ID = re.compile(r"^(L[0-9]_[A-Z]{2})_([0-9]{1,3})\Z")
PROFILES = ("native", "national")
STATUSES = ("active", "maintenance", "retired")


@dataclass(frozen=True)
class DeviceSpec:
    """What an operator registers. `calibration` maps channel key -> (scale, offset);
    `sensors` (national loggers only) lists sensor ids such as "L1_LF_1"."""

    device_id: str
    kind: str | None = None
    profile: Profile = "native"
    name: str | None = None
    lon: float | None = None
    lat: float | None = None
    elevation_m: float | None = None
    installed_on: date | None = None
    hazard_id: str | None = None
    site_id: str | None = None
    reporting_interval_s: int | None = None
    calibration: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    sensors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Channel:
    channel_id: int
    channel: str
    kind: str
    spec: str
    unit: str
    calibration: Calibration
    learnt: bool


@dataclass(frozen=True)
class Device:
    device_id: str
    kind: str | None
    profile: Profile
    status: DeviceStatus
    name: str | None
    lon: float | None
    lat: float | None
    elevation_m: float | None
    installed_on: date | None
    hazard_id: str | None
    site_id: str | None
    reporting_interval_s: int | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    channels: tuple[Channel, ...] = ()

    @property
    def calibration(self) -> dict[str, Calibration]:
        return {c.channel: c.calibration for c in self.channels}

    def info(self) -> DeviceInfo:
        return DeviceInfo(device_id=self.device_id, profile=self.profile, status=self.status,
                          kind=self.kind,
                          calibration=self.calibration)


# Attributes compared by the CSV import to tell "unchanged" from "conflict".
ATTRIBUTES = ("kind", "profile", "name", "lon", "lat", "elevation_m", "installed_on",
              "hazard_id", "site_id", "reporting_interval_s")


def audit(conn: psycopg.Connection, actor: str, action: str, device_id: str,
          detail: Mapping[str, Any] | None = None) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, object_type, object_id, detail) "
        "VALUES (%s, %s, 'device', %s, %s::jsonb)",
        (actor, action, device_id, json.dumps(detail or {}, default=str)))


def planned_channels(spec: DeviceSpec, catalogue: Catalogue | None = None
                     ) -> list[tuple[str, str, str, str]]:
    """(channel key, kind, spec, unit) rows a valid DeviceSpec registers up front."""
    cat = catalogue or load_catalogue()
    if spec.profile == "native":
        assert spec.kind is not None
        return [(c.name, spec.kind, c.name, c.unit) for c in cat.kind(spec.kind).channels]
    rows = []
    for sensor in spec.sensors:
        m = NATIONAL_SENSOR_ID.match(sensor)
        kind = cat.by_national_code(m.group(1)) if m else None
        assert kind is not None
        rows += [(f"{sensor}.{c.name}", kind.kind, c.name, c.unit) for c in kind.channels]
    return rows


def validate_spec(spec: DeviceSpec, catalogue: Catalogue | None = None) -> list[str]:
    """Every problem with `spec`, as specific messages (empty when it is valid)."""
    cat = catalogue or load_catalogue()
    problems: list[str] = []
    if not DEVICE_ID.match(spec.device_id or ""):
        problems.append(f"device id {quoted(spec.device_id or '', 70)} is invalid: 1-64 "
                        "characters, ASCII letters, digits, '_', '.', '-', starting with a "
                        "letter or digit (no spaces, newlines or control characters)")
    if spec.profile not in PROFILES:
        problems.append(f"profile {spec.profile!r} is invalid (native or national)")
    if spec.kind is not None and spec.kind not in cat.kinds:
        problems.append(f"unknown sensor kind {spec.kind!r} "
                        f"(known: {', '.join(sorted(cat.kinds))})")
    if spec.kind is None and spec.profile == "native":
        problems.append("a native device needs a sensor kind")
    if (spec.lon is None) != (spec.lat is None):
        problems.append("give both lon and lat, or neither")
    for label, value, lim in (("lon", spec.lon, 180.0), ("lat", spec.lat, 90.0),
                              ("elevation_m", spec.elevation_m, 9000.0)):
        if value is not None and not (math.isfinite(value) and -lim <= value <= lim):
            problems.append(f"{label} {value} is out of range -{lim:g}..{lim:g}")
    if spec.reporting_interval_s is not None and not 0 < spec.reporting_interval_s <= 86400 * 31:
        problems.append(f"reporting interval {spec.reporting_interval_s} s is out of range "
                        "1..2678400")
    if spec.sensors and spec.profile != "national":
        problems.append("only national loggers list sensors; a native device has one kind")
    for sensor in spec.sensors:
        m = NATIONAL_SENSOR_ID.match(sensor)
        if not m:
            problems.append(f"sensor id {sensor!r} is not of the form CLASS_TYPE_N, e.g. L1_LF_1")
        elif cat.by_national_code(m.group(1)) is None:
            problems.append(f"sensor {sensor!r}: no catalogue kind has national code "
                            f"{m.group(1)!r}")
    if not problems:
        keys = {row[0] for row in planned_channels(spec, cat)}
        for channel, (scale, offset) in spec.calibration.items():
            if channel not in keys:
                owner = f"kind {spec.kind!r}" if spec.profile == "native" else "this logger"
                problems.append(f"calibration for channel {channel!r}, which {owner} lacks "
                                f"(channels: {', '.join(sorted(keys)) or 'none registered'})")
            problems += _calibration_problems(channel, scale, offset)
    return problems


def _calibration_problems(channel: str, scale: float, offset: float) -> list[str]:
    if not (math.isfinite(scale) and math.isfinite(offset)):
        return [f"calibration of {channel!r} must be finite numbers"]
    if scale == 0:
        return [f"calibration scale of {channel!r} must not be 0"]
    return []


def with_defaults(spec: DeviceSpec, catalogue: Catalogue | None = None) -> DeviceSpec:
    """`spec` with the reporting interval defaulted from the catalogue kind."""
    if spec.reporting_interval_s is None and spec.kind is not None:
        cat = catalogue or load_catalogue()
        return replace(spec, reporting_interval_s=cat.kind(spec.kind).reporting_interval_s)
    return spec


def insert_rows(spec: DeviceSpec) -> tuple[Any, ...]:
    return (spec.device_id, spec.kind, spec.profile, spec.name, spec.lon, spec.lat,
            spec.elevation_m, spec.installed_on, spec.hazard_id, spec.site_id,
            spec.reporting_interval_s)


INSERT_DEVICE = """INSERT INTO devices (device_id, kind, profile, name, lon, lat, elevation_m,
    installed_on, hazard_id, site_id, reporting_interval_s)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
INSERT_CHANNEL = """INSERT INTO channels (device_id, channel, kind, spec, unit, cal_scale,
    cal_offset) VALUES (%s, %s, %s, %s, %s, %s, %s)"""


def add_device(conn: psycopg.Connection, spec: DeviceSpec, *, actor: str = "system") -> Device:
    """Register a device and its channels; InvalidInput says exactly what is wrong."""
    cat = load_catalogue()
    problems = validate_spec(spec, cat)
    if problems:
        raise InvalidInput(f"device {spec.device_id!r}: " + "; ".join(problems))
    spec = with_defaults(spec, cat)
    with conn.transaction():
        try:
            with conn.transaction():
                conn.execute(INSERT_DEVICE, insert_rows(spec))
        except psycopg.errors.UniqueViolation:
            raise InvalidInput(f"device {spec.device_id!r} already exists") from None
        with conn.cursor() as cur:
            cur.executemany(INSERT_CHANNEL, [
                (spec.device_id, key, kind, name, unit,
                 *spec.calibration.get(key, (1.0, 0.0)))
                for key, kind, name, unit in planned_channels(spec, cat)])
        audit(conn, actor, "add", spec.device_id, {"kind": spec.kind, "profile": spec.profile})
    return get_device(conn, spec.device_id)


def _device(row: Mapping[str, Any], channels: Iterable[Mapping[str, Any]]) -> Device:
    return Device(
        **{k: row[k] for k in ("device_id", "kind", "profile", "status", "name", "lon", "lat",
                               "elevation_m", "installed_on", "hazard_id", "site_id",
                               "reporting_interval_s", "created_at", "updated_at",
                               "retired_at")},
        channels=tuple(Channel(c["channel_id"], c["channel"], c["kind"], c["spec"], c["unit"],
                               Calibration(c["cal_scale"], c["cal_offset"]), c["learnt"])
                       for c in channels))


_CHANNEL_COLS = "channel_id, device_id, channel, kind, spec, unit, cal_scale, cal_offset, learnt"


def get_device(conn: psycopg.Connection, device_id: str) -> Device:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM devices WHERE device_id = %s", (device_id,)).fetchone()
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        chans = cur.execute(f"SELECT {_CHANNEL_COLS} FROM channels WHERE device_id = %s "
                            "ORDER BY channel_id", (device_id,)).fetchall()
    return _device(row, chans)


def list_devices(conn: psycopg.Connection, *, kind: str | None = None,
                 status: str | None = None, hazard_id: str | None = None) -> list[Device]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status {status!r} is invalid ({', '.join(STATUSES)})")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT * FROM devices WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
               AND (%(status)s::text IS NULL OR status = %(status)s)
               AND (%(hazard)s::text IS NULL OR hazard_id = %(hazard)s) ORDER BY device_id""",
            {"kind": kind, "status": status, "hazard": hazard_id}).fetchall()
        chans: dict[str, list[dict[str, Any]]] = {}
        for c in cur.execute(f"SELECT {_CHANNEL_COLS} FROM channels WHERE device_id = ANY(%s) "
                             "ORDER BY channel_id", ([r["device_id"] for r in rows],)):
            chans.setdefault(c["device_id"], []).append(c)
    return [_device(r, chans.get(r["device_id"], [])) for r in rows]


def set_status(conn: psycopg.Connection, device_id: str, status: str, *,
               actor: str = "system") -> Device:
    """Put a device in maintenance or back to active (retire with retire_device)."""
    if status not in ("active", "maintenance"):
        raise InvalidInput(f"status must be active or maintenance, got {status!r}")
    with conn.transaction():
        status_before = lock_device(conn, device_id)
        if status_before == "retired":
            raise InvalidInput(f"device {device_id!r} is retired; register a new device instead")
        conn.execute("UPDATE devices SET status = %s, updated_at = now() WHERE device_id = %s",
                     (status, device_id))
        audit(conn, actor, "set_status", device_id, {"from": status_before, "to": status})
    return get_device(conn, device_id)


def retire_device(conn: psycopg.Connection, device_id: str, *, actor: str = "system") -> Device:
    """Retire a device for good: its secret is revoked and its open commands cancelled."""
    with conn.transaction():
        status_before = lock_device(conn, device_id)
        if status_before == "retired":
            raise InvalidInput(f"device {device_id!r} is already retired")
        conn.execute("UPDATE devices SET status = 'retired', retired_at = now(), "
                     "updated_at = now() WHERE device_id = %s", (device_id,))
        credentials.revoke(conn, device_id)
        conn.execute("UPDATE device_commands SET state = 'cancelled' "
                     "WHERE device_id = %s AND state IN ('queued', 'sent')", (device_id,))
        audit(conn, actor, "retire", device_id)
    return get_device(conn, device_id)


def set_calibration(conn: psycopg.Connection, device_id: str, channel: str, scale: float,
                    offset: float, *, actor: str = "system") -> Channel:
    problems = _calibration_problems(channel, scale, offset)
    if problems:
        raise InvalidInput(problems[0])
    with conn.transaction():
        device = get_device(conn, device_id)
        old = next((c for c in device.channels if c.channel == channel), None)
        if old is None:
            raise InvalidInput(f"device {device_id!r} has no channel {channel!r} (channels: "
                               f"{', '.join(c.channel for c in device.channels) or 'none'})")
        conn.execute("UPDATE channels SET cal_scale = %s, cal_offset = %s "
                     "WHERE channel_id = %s", (scale, offset, old.channel_id))
        # The device changed as the gateway sees it: its cache refreshes by updated_at.
        conn.execute("UPDATE devices SET updated_at = now() WHERE device_id = %s",
                     (device_id,))
        audit(conn, actor, "calibrate", device_id,
              {"channel": channel, "from": [old.calibration.scale, old.calibration.offset],
               "to": [scale, offset]})
    return next(c for c in get_device(conn, device_id).channels if c.channel == channel)


def learn_channel(conn: psycopg.Connection, device_id: str, channel_key: str, kind: str,
                  spec: str) -> int:
    """The channel_id of (device, key), adding it (learnt = true) the first time it is seen.

    Idempotent and safe when several gateways learn the same channel at once: the insert is
    ON CONFLICT DO NOTHING and the id is read back afterwards.
    """
    unit = load_catalogue().kind(kind).channel(spec).unit
    row = conn.execute(
        """INSERT INTO channels (device_id, channel, kind, spec, unit, learnt)
           VALUES (%s, %s, %s, %s, %s, true) ON CONFLICT (device_id, channel) DO NOTHING
           RETURNING channel_id""", (device_id, channel_key, kind, spec, unit)).fetchone()
    if row is not None:
        return int(row[0])
    found = conn.execute("SELECT channel_id, kind, spec FROM channels "
                         "WHERE device_id = %s AND channel = %s",
                         (device_id, channel_key)).fetchone()
    assert found is not None  # the conflicting row exists: rows are never deleted
    if (found[1], found[2]) != (kind, spec):
        raise InvalidInput(f"channel {channel_key!r} of {device_id!r} is registered as "
                           f"{found[1]}.{found[2]}, not {kind}.{spec}")
    return int(found[0])


def device_info(conn: psycopg.Connection, device_id: str) -> DeviceInfo | None:
    try:
        return get_device(conn, device_id).info()
    except NotFound:
        return None


def load_device_infos(conn: psycopg.Connection) -> dict[str, DeviceInfo]:
    """Every device's DeviceInfo (retired ones included, so the gateway can say so)."""
    return {d.device_id: d.info() for d in list_devices(conn)}


def registry_snapshot(conn: psycopg.Connection) -> str:
    """The server's current snapshot (pg_snapshot as text): taken before reading devices, it
    names every write that read may have missed (`changed_device_infos`)."""
    row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert row is not None
    return str(row[0])


def changed_device_infos(conn: psycopg.Connection, seen: str) -> tuple[dict[str, DeviceInfo], str]:
    """DeviceInfo of the devices written by a transaction that snapshot `seen` (from
    `registry_snapshot`, taken before the previous read) did not see: status, kind, profile
    and calibration changes and new devices, however late they committed; and the snapshot to
    pass next time. An index range from `seen`'s xmin on (devices.changed_xid, migration
    0145), so its cost follows the devices that changed, not the registry."""
    with conn.cursor(row_factory=dict_row) as cur:
        now = registry_snapshot(conn)
        rows = cur.execute(
            "SELECT device_id, profile, status, kind FROM devices "
            "WHERE changed_xid >= pg_snapshot_xmin(%(seen)s::pg_snapshot) "
            "AND NOT pg_visible_in_snapshot(changed_xid, %(seen)s::pg_snapshot)",
            {"seen": seen}).fetchall()
        cal: dict[str, dict[str, Calibration]] = {}
        for c in cur.execute("SELECT device_id, channel, cal_scale, cal_offset FROM channels "
                             "WHERE device_id = ANY(%s)", ([r["device_id"] for r in rows],)):
            cal.setdefault(c["device_id"], {})[c["channel"]] = Calibration(c["cal_scale"],
                                                                           c["cal_offset"])
    return ({r["device_id"]: DeviceInfo(device_id=r["device_id"], profile=r["profile"],
                                        status=r["status"], kind=r["kind"],
                                        calibration=cal.get(r["device_id"], {}))
             for r in rows}, now)


def channel_ids(conn: psycopg.Connection, keys: Iterable[tuple[str, str]]
                ) -> dict[tuple[str, str], int]:
    """Map (device_id, channel key) -> channels.channel_id; unknown pairs are left out."""
    pairs = list(dict.fromkeys(keys))
    if not pairs:
        return {}
    rows = conn.execute(
        """SELECT c.device_id, c.channel, c.channel_id
           FROM unnest(%s::text[], %s::text[]) AS k(device_id, channel)
           JOIN channels c USING (device_id, channel)""",
        ([p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}
