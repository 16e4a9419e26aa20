"""Maintenance windows on a device: planned work (antenna re-mount, sensor reset, re-zeroing)
during which the device's readings raise no warning and its displacement offsets are expected
(the engine removes them without a data-quality finding; alerts/engine/maintenance.py).

A window has a start, an end (both aware times, end after start, at most MAX_DAYS long) and a
reason; it is added, listed and cancelled by people (`geowarn devices maintenance`, the API),
each change in audit_log (object_type 'device'). A cancelled window stops counting from its
cancellation, so the past it covered keeps its meaning. Adding or cancelling one touches the
device's updated_at, which makes a running engine reload its setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import class_row

from devices.registry import audit, get_device
from geowarn.errors import InvalidInput, NotFound

MAX_DAYS = 90
MAX_REASON = 500


@dataclass(frozen=True)
class Window:
    window_id: int
    device_id: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    cancelled_by: str | None
    cancelled_at: datetime | None

    @property
    def effective_end(self) -> datetime:
        """When the window stops counting: its end, or its cancellation if earlier."""
        if self.cancelled_at is None:
            return self.ends_at
        return max(self.starts_at, min(self.ends_at, self.cancelled_at))


_COLUMNS = ("window_id, device_id, starts_at, ends_at, reason, created_by, created_at, "
            "cancelled_by, cancelled_at")


def add_window(conn: psycopg.Connection, device_id: str, starts_at: datetime,
               ends_at: datetime, reason: str, *, actor: str) -> Window:
    for name, t in (("from", starts_at), ("to", ends_at)):
        if not isinstance(t, datetime) or t.tzinfo is None:
            raise InvalidInput(f"maintenance {name}: need a time with a time zone, got {t!r}")
    if ends_at <= starts_at:
        raise InvalidInput("maintenance to: must be after from")
    if ends_at - starts_at > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"maintenance window longer than {MAX_DAYS} days: retire the device "
                           "or put it in maintenance status instead")
    text = (reason or "").strip()
    if not text or len(text) > MAX_REASON:
        raise InvalidInput(f"maintenance reason: 1-{MAX_REASON} characters required")
    with conn.transaction():
        device = get_device(conn, device_id)  # NotFound for an unknown device
        if device.status == "retired":
            raise InvalidInput(f"device {device_id} is retired")
        with conn.cursor(row_factory=class_row(Window)) as cur:
            w = cur.execute(
                f"INSERT INTO device_maintenance (device_id, starts_at, ends_at, reason, "
                f"created_by) VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (device_id, starts_at, ends_at, text, actor)).fetchone()
        assert w is not None
        _touch(conn, device_id)
        audit(conn, actor, "maintenance_window", device_id, {
            "window_id": w.window_id, "from": w.starts_at.isoformat(),
            "to": w.ends_at.isoformat(), "reason": text})
    return w


def list_windows(conn: psycopg.Connection, device_ids: Sequence[str] | None = None, *,
                 include_cancelled: bool = False) -> list[Window]:
    """Windows of the given devices (all when None), oldest first."""
    with conn.cursor(row_factory=class_row(Window)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM device_maintenance WHERE (%s::text[] IS NULL OR "
            f"device_id = ANY(%s)) AND (%s OR cancelled_at IS NULL) "
            f"ORDER BY starts_at, window_id",
            (device_ids and list(device_ids), list(device_ids or ()), include_cancelled)
        ).fetchall()


def get_window(conn: psycopg.Connection, window_id: int) -> Window:
    with conn.cursor(row_factory=class_row(Window)) as cur:
        w = cur.execute(f"SELECT {_COLUMNS} FROM device_maintenance WHERE window_id = %s",
                        (window_id,)).fetchone()
    if w is None:
        raise NotFound(f"maintenance window {window_id} does not exist")
    return w


def cancel_window(conn: psycopg.Connection, window_id: int, *, actor: str) -> Window:
    with conn.transaction():
        w = get_window(conn, window_id)
        if w.cancelled_at is not None:
            raise InvalidInput(f"maintenance window {window_id} was already cancelled by "
                               f"{w.cancelled_by} at {w.cancelled_at.isoformat()}")
        conn.execute("UPDATE device_maintenance SET cancelled_by = %s, cancelled_at = now() "
                     "WHERE window_id = %s", (actor, window_id))
        _touch(conn, w.device_id)
        audit(conn, actor, "maintenance_cancelled", w.device_id, {"window_id": window_id})
    return get_window(conn, window_id)


def _touch(conn: psycopg.Connection, device_id: str) -> None:
    conn.execute("UPDATE devices SET updated_at = now() WHERE device_id = %s", (device_id,))
