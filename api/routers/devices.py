"""/api/devices: devices with their health, one device's channels, last readings and commands
(queue one, see replies), its readings raw or downsampled for charts, its maintenance windows
(list, add, cancel: admins and duty officers of its county); /api/deadletters.

A device belongs to the county of the hazard point it watches; one not placed on a hazard
point is the province's (see api/scope.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Conn, CurrentUser, require
from api.schemas import ERRORS
from api.scope import sql_prefixes, whole_province
from api.users import User
from devices import maintenance
from devices.commands import list_commands, queue_command
from devices.health import assess, device_problems, health_rows
from devices.registry import Device, get_device, list_devices
from geowarn import readings
from geowarn.errors import InvalidInput
from geowarn.timeargs import parse_duration
from ingest.deadletters import payload_excerpt

router = APIRouter(tags=["devices"], responses=ERRORS)
MAX_RAW_ROWS = 20_000
MAX_BUCKETS = 5_000


def _county_of(conn: Conn, device: Device) -> str | None:
    if device.hazard_id is None:
        return None
    row = conn.execute("SELECT county_code FROM hazard_points WHERE hazard_id = %s",
                       (device.hazard_id,)).fetchone()
    return str(row[0]) if row else None


def _device_for(conn: Conn, user: User, device_id: str, action: str = "read") -> Device:
    device = get_device(conn, device_id)  # NotFound -> 404
    require(user, action, _county_of(conn, device))
    return device


def _health(device: Device, row: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    row = row or {}
    state = None
    if device.reporting_interval_s:
        state = assess(now, row.get("last_reading_at"), device.reporting_interval_s,
                       row.get("online")).state
    return {"state": state, "last_seen": row.get("last_seen"),
            "last_reading_at": row.get("last_reading_at"),
            "battery_pct": row.get("battery_pct"), "signal_dbm": row.get("signal_dbm"),
            "problems": device_problems(row) if row else []}


def _visible_hazards(conn: Conn, user: User) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT hazard_id FROM hazard_points WHERE county_code LIKE ANY(%s)",
        (sql_prefixes(user.counties),))}


@router.get("/api/devices", summary="devices in your counties with their health")
def devices(conn: Conn, user: CurrentUser, kind: str | None = None,
            device_status: Annotated[str | None, Query(alias="status")] = None,
            hazard: str | None = None) -> list[dict[str, Any]]:
    require(user, "read", check_county=False)
    found = list_devices(conn, kind=kind, status=device_status, hazard_id=hazard)
    hazards = _visible_hazards(conn, user)
    province = whole_province(user.counties)
    found = [d for d in found if (d.hazard_id in hazards) or (d.hazard_id is None and province)]
    rows = health_rows(conn, [d.device_id for d in found])
    now = datetime.now(UTC)
    return [{"id": d.device_id, "kind": d.kind, "profile": d.profile, "status": d.status,
             "name": d.name, "hazard_id": d.hazard_id, "lon": d.lon, "lat": d.lat,
             "health": _health(d, rows.get(d.device_id), now)} for d in found]


@router.get("/api/devices/{device_id}", summary="one device: channels, health, last values, "
            "recent commands")
def device_detail(device_id: str, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    d = _device_for(conn, user, device_id)
    rows = health_rows(conn, [device_id])
    channel_ids = {c.channel: c.channel_id for c in d.channels}
    latest = readings.latest(conn, list(channel_ids.values())) if channel_ids else {}
    by_id = {v: k for k, v in channel_ids.items()}
    return {
        "id": d.device_id, "kind": d.kind, "profile": d.profile, "status": d.status,
        "name": d.name, "hazard_id": d.hazard_id, "site_id": d.site_id,
        "reporting_interval_s": d.reporting_interval_s,
        "health": _health(d, rows.get(device_id), datetime.now(UTC)),
        "channels": [{"channel": c.channel, "unit": c.unit} for c in d.channels],
        "latest": [{"channel": by_id[cid], "ts": v.ts, "value": v.value}
                   for cid, v in latest.items()],
        "commands": [_command(c) for c in list_commands(conn, device_id, limit=20)],
    }


def _command(c: Any) -> dict[str, Any]:
    return {"id": c.command_id, "name": c.name, "params": dict(c.params), "state": c.state,
            "queued_at": c.queued_at, "sent_at": c.sent_at, "replied_at": c.replied_at,
            "deadline": c.deadline, "reply": c.reply, "requested_by": c.requested_by}


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "set_interval", "params": {"sample_s": 60, "upload_s": 600}, "timeout_s": 600}]})
    name: Literal["set_interval", "high_frequency", "reboot", "sync_time"]
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=600.0, gt=0, le=7 * 86400)


@router.post("/api/devices/{device_id}/commands", status_code=status.HTTP_201_CREATED,
             summary="queue a command; the gateway sends it and records the reply")
def command(device_id: str, body: CommandIn, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    _device_for(conn, user, device_id, "command_devices")
    command_id = queue_command(conn, device_id, body.name, body.params, user.username,
                               body.timeout_s)
    return {"id": command_id, "state": "queued"}


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise HTTPException(422, f"{name}: give a time zone (2026-07-01T08:00+08:00)")
    return value


@router.get("/api/devices/{device_id}/readings",
            summary="readings raw, or one aggregate per time bucket (for charts)")
def device_readings(
        device_id: str, conn: Conn, user: CurrentUser,
        start: Annotated[datetime, Query(alias="from")],
        end: Annotated[datetime | None, Query(alias="to")] = None,
        channel: str | None = None,
        bucket: Annotated[str | None, Query(description="e.g. 10m, 1h, 1d")] = None,
        agg: Literal["avg", "min", "max", "sum", "count", "first", "last"] = "avg",
        limit: Annotated[int, Query(ge=1, le=MAX_RAW_ROWS)] = 5000) -> dict[str, Any]:
    d = _device_for(conn, user, device_id)
    start = _aware("from", start)
    end = _aware("to", end) if end else datetime.now(UTC)
    channels = {c.channel: c for c in d.channels}
    if channel is not None and channel not in channels:
        raise HTTPException(422, f"channel: {device_id} has no channel {channel!r} "
                            f"(channels: {', '.join(channels)})")
    chosen = [channels[channel]] if channel else list(channels.values())
    if bucket is None:
        rows = readings.device_readings(conn, device_id, start, end, channel=channel,
                                        limit=limit)
        return {"device": device_id, "raw": True, "readings": [
            {"channel": r.channel, "ts": r.ts, "value": r.value, "quality": r.quality}
            for r in rows]}
    try:
        width = parse_duration(bucket)
    except InvalidInput as exc:
        raise HTTPException(422, f"bucket: {exc}") from None
    if width < timedelta(minutes=1):
        raise HTTPException(422, "bucket: at least 1m")
    if (end - start) / width > MAX_BUCKETS * max(1, len(chosen)):
        raise HTTPException(422, f"bucket: {bucket} over that range gives more than "
                            f"{MAX_BUCKETS} buckets; widen the bucket")
    name_of = {c.channel_id: c.channel for c in chosen}
    buckets = readings.downsample(conn, list(name_of), start, end, width, agg)
    return {"device": device_id, "raw": False, "bucket": bucket, "agg": agg, "readings": [
        {"channel": name_of[b.channel_id], "ts": b.start, "value": b.value, "n": b.n}
        for b in buckets]}


@router.get("/api/deadletters", tags=["ingest"], summary="rejected messages with reasons")
def dead_letters(conn: Conn, user: CurrentUser, device: str | None = None,
                 reason: str | None = None, since: datetime | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Without `device`, every device's in your scope: for users whose scope is a whole
    province (letters of a device on a hazard point go by its county, as the device does;
    those of unknown devices or devices on no hazard point are the province's)."""
    if device is not None:
        _device_for(conn, user, device)
    elif not whole_province(user.counties):
        raise HTTPException(422, "device: give device=ID (dead letters of all devices are "
                            "for users whose scope is the whole province)")
    require(user, "read", check_county=False)
    since = _aware("since", since) if since else None
    # Scoped here rather than by ingest.deadletters, which knows no hazard points.
    rows = conn.execute(
        "SELECT l.id, l.received_at, l.topic, l.device_id, l.reason, l.detail, l.channel, "
        "l.payload, l.payload_size FROM dead_letters l LEFT JOIN devices d USING (device_id) "
        "LEFT JOIN hazard_points h ON h.hazard_id = d.hazard_id "
        "WHERE (h.county_code LIKE ANY(%s) OR (h.county_code IS NULL AND %s)) "
        "AND (%s::text IS NULL OR l.device_id = %s) AND (%s::text IS NULL OR l.reason = %s) "
        "AND (%s::timestamptz IS NULL OR l.received_at >= %s) "
        "ORDER BY l.received_at DESC, l.id DESC LIMIT %s",
        (sql_prefixes(user.counties), whole_province(user.counties), device, device, reason,
         reason, since, since, limit)).fetchall()
    return [{"id": i, "received_at": at, "topic": topic, "device_id": dev, "reason": why,
             "detail": detail, "channel": channel, "payload_size": size,
             "payload_excerpt": payload_excerpt(bytes(payload))}
            for i, at, topic, dev, why, detail, channel, payload, size in rows]


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={
        "examples": [{"from": "2026-12-02T08:00:00+08:00", "to": "2026-12-02T18:00:00+08:00",
                      "reason": "GNSS antenna re-mount"}]})
    starts_at: datetime = Field(alias="from")
    ends_at: datetime = Field(alias="to")
    reason: str = Field(min_length=1, max_length=maintenance.MAX_REASON)


def _window(w: maintenance.Window) -> dict[str, Any]:
    return {"id": w.window_id, "device_id": w.device_id, "from": w.starts_at,
            "to": w.ends_at, "reason": w.reason, "created_by": w.created_by,
            "created_at": w.created_at, "cancelled_by": w.cancelled_by,
            "cancelled_at": w.cancelled_at}


@router.get("/api/devices/{device_id}/maintenance",
            summary="the device's maintenance windows (its readings raise nothing inside one)")
def maintenance_windows(device_id: str, conn: Conn, user: CurrentUser,
                        include_cancelled: bool = False) -> list[dict[str, Any]]:
    _device_for(conn, user, device_id)
    return [_window(w) for w in maintenance.list_windows(
        conn, [device_id], include_cancelled=include_cancelled)]


@router.post("/api/devices/{device_id}/maintenance", status_code=status.HTTP_201_CREATED,
             summary="add a maintenance window: readings raise nothing, offsets are expected")
def add_maintenance(device_id: str, body: MaintenanceIn, conn: Conn,
                    user: CurrentUser) -> dict[str, Any]:
    _device_for(conn, user, device_id, "command_devices")
    w = maintenance.add_window(conn, device_id, _aware("from", body.starts_at),
                               _aware("to", body.ends_at), body.reason, actor=user.username)
    return _window(w)


@router.delete("/api/devices/{device_id}/maintenance/{window_id}",
               summary="cancel a maintenance window (it stops counting now)")
def cancel_maintenance(device_id: str, window_id: int, conn: Conn,
                       user: CurrentUser) -> dict[str, Any]:
    _device_for(conn, user, device_id, "command_devices")
    w = maintenance.get_window(conn, window_id)
    if w.device_id != device_id:
        raise HTTPException(404, f"maintenance window {window_id} is not {device_id}'s")
    return _window(maintenance.cancel_window(conn, window_id, actor=user.username))
