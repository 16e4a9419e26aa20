"""Commands to devices: queued by an operator, published by the gateway, closed by the
device's reply or by their deadline.

State machine: queued -> sent -> succeeded | failed; queued/sent -> timed_out (deadline
passed) | cancelled (device retired). The deadline counts from queueing, so a command for a
device that stays offline does not linger for ever. Delivery is at-least-once: a command is
marked sent in the same transaction that published it, so a crash between the two resends it,
and the command id lets the device ignore the repeat.

Params are validated with the command model in devices/native.py (`check_command`) when the
command is queued; `sync_time` takes no params here because the server's time is added when
the command is actually sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from devices.messages import CommandReply
from devices.registry import audit
from geowarn.errors import InvalidInput, NotFound

Publish = Callable[[str, bytes, int], object]
"""publish(topic, payload, qos): the caller backs it with paho and raises if it fails."""

OPEN_STATES = ("queued", "sent")
MAX_TIMEOUT_S = 7 * 86400


@dataclass(frozen=True)
class Command:
    command_id: str
    device_id: str
    name: str
    params: Mapping[str, Any]
    state: str
    queued_at: datetime
    sent_at: datetime | None
    replied_at: datetime | None
    deadline: datetime
    reply: Mapping[str, Any] | None
    requested_by: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def validate_command(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params normalised, or InvalidInput naming the problem."""
    from devices.native import check_command

    if name == "sync_time":
        if params:
            raise InvalidInput("sync_time takes no parameters: the server's time is sent "
                               "when the command is dispatched")
        check_command(name, {"server_time": _utcnow()})
        return {}
    return check_command(name, params)


def queue_command(conn: psycopg.Connection, device_id: str, name: str,
                  params: Mapping[str, Any], requested_by: str, timeout_s: float = 600.0,
                  *, now: datetime | None = None) -> str:
    """Queue a command; returns its id. The device must exist and not be retired."""
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(f"timeout must be in (0, {MAX_TIMEOUT_S}] seconds, got {timeout_s}")
    clean = validate_command(name, params)
    queued_at = now or _utcnow()
    command_id = uuid.uuid4().hex
    with conn.transaction():
        row = conn.execute("SELECT status FROM devices WHERE device_id = %s",
                           (device_id,)).fetchone()
        if row is None:
            raise NotFound(f"no device {device_id!r}")
        if row[0] == "retired":
            raise InvalidInput(f"device {device_id!r} is retired; it takes no commands")
        conn.execute(
            """INSERT INTO device_commands (command_id, device_id, name, params, queued_at,
                                            deadline, requested_by)
               VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s)""",
            (command_id, device_id, name, json.dumps(clean), queued_at,
             queued_at + timedelta(seconds=timeout_s), requested_by))
        audit(conn, requested_by, "command", device_id,
              {"command_id": command_id, "name": name, "params": clean})
    return command_id


def encode(profile: str, device_id: str, command_id: str, name: str, params: Mapping[str, Any],
           *, now: datetime, deadline: datetime) -> tuple[str, bytes]:
    """(topic, payload) for the device's profile, via the profile's encoder."""
    p = dict(params)
    if name == "sync_time":
        p["server_time"] = now
    if profile == "native":
        from devices.native import encode_native_command

        return encode_native_command(device_id, command_id, name, p, issued_at=now,
                                     expires_at=deadline)
    from devices.national_commands import encode_national_command

    return encode_national_command(device_id, command_id, name, p)


def dispatch_pending(conn: psycopg.Connection, publish: Publish, *,
                     now: datetime | None = None, limit: int = 100) -> list[str]:
    """Publish up to `limit` queued commands (oldest first); returns the ids sent.

    Each command is locked (SKIP LOCKED, so several gateways never send one twice at once),
    published and marked sent in its own transaction. If `publish` raises, that command stays
    queued and the exception propagates. A command its encoder refuses is marked failed.
    """
    sent: list[str] = []
    for _ in range(limit):
        at = now or _utcnow()
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT c.command_id, c.device_id, c.name, c.params, c.deadline, d.profile
                   FROM device_commands c JOIN devices d USING (device_id)
                   WHERE c.state = 'queued' AND c.deadline > %s
                   ORDER BY c.queued_at, c.command_id LIMIT 1
                   FOR UPDATE OF c SKIP LOCKED""", (at,)).fetchone()
            if row is None:
                break
            try:
                topic, payload = encode(row["profile"], row["device_id"], row["command_id"],
                                        row["name"], row["params"], now=at,
                                        deadline=row["deadline"])
            except InvalidInput as exc:
                cur.execute("UPDATE device_commands SET state = 'failed', replied_at = %s, "
                            "reply = %s::jsonb WHERE command_id = %s",
                            (at, json.dumps({"ok": False, "detail": f"not sent: {exc}"}),
                             row["command_id"]))
                continue
            publish(topic, payload, 1)
            cur.execute("UPDATE device_commands SET state = 'sent', sent_at = %s "
                        "WHERE command_id = %s", (at, row["command_id"]))
            sent.append(row["command_id"])
    return sent


def record_reply(conn: psycopg.Connection, reply: CommandReply, *,
                 now: datetime | None = None) -> str:
    """Close a command with its reply. Returns what happened: "succeeded" or "failed" (closed
    now), "late" (the command was already closed; the reply is kept if none was), "unknown"
    (no such command), or "wrong_device" (the reply came from another device: ignored)."""
    at = now or _utcnow()
    doc = json.dumps({"ok": reply.ok, "detail": reply.detail, "data": dict(reply.data)},
                     default=str)
    with conn.transaction():
        row = conn.execute("SELECT device_id, state FROM device_commands "
                           "WHERE command_id = %s FOR UPDATE", (reply.command_id,)).fetchone()
        if row is None:
            return "unknown"
        if reply.device_id is not None and reply.device_id != row[0]:
            return "wrong_device"
        if row[1] not in OPEN_STATES:
            conn.execute("UPDATE device_commands SET reply = %s::jsonb, replied_at = %s "
                         "WHERE command_id = %s AND reply IS NULL",
                         (doc, at, reply.command_id))
            return "late"
        state = "succeeded" if reply.ok else "failed"
        conn.execute("UPDATE device_commands SET state = %s, reply = %s::jsonb, "
                     "replied_at = %s WHERE command_id = %s",
                     (state, doc, at, reply.command_id))
    return state


def expire(conn: psycopg.Connection, now: datetime | None = None) -> list[str]:
    """Mark open commands whose deadline has passed as timed_out; returns their ids."""
    rows = conn.execute(
        "UPDATE device_commands SET state = 'timed_out' "
        "WHERE state IN ('queued', 'sent') AND deadline <= %s RETURNING command_id",
        (now or _utcnow(),)).fetchall()
    return sorted(r[0] for r in rows)


def get_command(conn: psycopg.Connection, command_id: str) -> Command:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM device_commands WHERE command_id = %s",
                          (command_id,)).fetchone()
    if row is None:
        raise NotFound(f"no command {command_id!r}")
    return Command(**row)


def list_commands(conn: psycopg.Connection, device_id: str, *, open_only: bool = False,
                  limit: int = 20) -> list[Command]:
    """A device's most recent commands, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM device_commands WHERE device_id = %s "
            "AND (NOT %s OR state IN ('queued', 'sent')) ORDER BY queued_at DESC LIMIT %s",
            (device_id, open_only, limit)).fetchall()
    return [Command(**r) for r in rows]
