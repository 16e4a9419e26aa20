"""The device row lock that every change of a device's state takes first (registry status
changes, retirement, secret issue and rotation), so they serialise per device."""

from __future__ import annotations

import psycopg

from geowarn.errors import NotFound


def lock_device(conn: psycopg.Connection, device_id: str) -> str:
    """Lock the device's row for this transaction and return its status (NotFound if none)."""
    row = conn.execute("SELECT status FROM devices WHERE device_id = %s FOR UPDATE",
                       (device_id,)).fetchone()
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    return str(row[0])
