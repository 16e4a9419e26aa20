"""What people and the system do to alerts: acknowledge, resolve, comment (a person, stamped
with the wall clock) and auto_resolve (the system, stamped in data time). The rules are in
alerts/lifecycle/writes.py's docstring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from alerts.lifecycle.queries import Alert, AlertEvent, get_alert_row
from alerts.lifecycle.recording import MAX_TEXT, LevelChange, audit, record, required_text
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput, NotFound


def auto_resolve(conn: psycopg.Connection, *, data_time: datetime, quiet: timedelta,
                 targets: Sequence[tuple[str, str]] | None = None) -> list[AlertEvent]:
    """Resolve (as "system") every open alert cleared at least `quiet` before `data_time`,
    each stamped at the data time it became due (its clearing + `quiet`), so when the check
    runs does not change the history; the "resolved" events written. `targets`: only the
    alerts of these (target_type, target_id) (an engine partition's own)."""
    if not isinstance(data_time, datetime) or data_time.tzinfo is None:
        raise InvalidInput(f"auto_resolve: data_time must be timezone-aware, got {data_time!r}")
    if quiet <= timedelta(0):
        raise InvalidInput(f"auto_resolve: quiet period {quiet} must be positive")
    events = []
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            due = cur.execute(
                "SELECT alert_id, target_type, target_id, hazard_kind, level, last_data_time "
                "FROM alerts WHERE status <> 'resolved' AND level = 0 "
                "AND last_data_time <= %s AND (%s::text[] IS NULL OR (target_type, target_id) "
                "IN (SELECT * FROM unnest(%s::text[], %s::text[]))) "
                "ORDER BY target_type, target_id, hazard_kind FOR UPDATE",
                (data_time - quiet, None if targets is None else [t for t, _ in targets],
                 [t for t, _ in targets or ()], [i for _, i in targets or ()])).fetchall()
        for alert in due:
            reason = (f"quiet for {format_duration(quiet)} since the clearing at "
                      f"{alert['last_data_time'].astimezone(UTC).isoformat()}")
            events.append(_resolve_locked(conn, alert, "system", reason,
                                          (alert["last_data_time"] + quiet).astimezone(UTC)))
    return events


def format_duration(span: timedelta) -> str:
    """6:30:00 -> "6 h 30 min"; 2 days -> "2 d"."""
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts) or f"{span.total_seconds():g} s"


def _resolve_locked(conn: psycopg.Connection, alert: Mapping[str, Any], actor: str,
                    reason: str, at: datetime | None) -> AlertEvent:
    """Resolve a row-locked open alert: at `at` (event time), or the wall clock when None."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE alerts SET status = 'resolved', resolved_by = %s, "
            "resolved_at = coalesce(%s, now()), resolve_reason = %s WHERE alert_id = %s "
            "RETURNING alert_id, target_type, target_id, hazard_kind, level, resolved_at",
            (actor, at, reason, alert["alert_id"])).fetchone()
    assert row is not None
    change = LevelChange(row["target_type"], row["target_id"], row["hazard_kind"], Level.NONE,
                         row["resolved_at"], {"reason": reason})
    return record(conn, row["alert_id"], change, "resolved", Level(row["level"]), actor,
                   {"reason": reason})


def _lock(conn: psycopg.Connection, alert_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT alert_id, target_type, target_id, hazard_kind, status, level, "
            "acknowledged_by, acknowledged_at, resolved_by, resolved_at FROM alerts "
            "WHERE alert_id = %s FOR UPDATE", (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return row


def acknowledge(conn: psycopg.Connection, alert_id: int, *, user: str,
                note: str | None = None) -> Alert:
    """open -> acknowledged. A later level rise re-opens it (see the module docstring)."""
    user = required_text(user, "user")
    note = note.strip() or None if note is not None else None
    if note is not None and len(note) > MAX_TEXT:
        raise InvalidInput(f"note is longer than {MAX_TEXT} characters")
    with conn.transaction():
        row = _lock(conn, alert_id)
        if row["status"] == "acknowledged":
            raise InvalidInput(f"alert {alert_id} is already acknowledged by "
                               f"{row['acknowledged_by']} at "
                               f"{row['acknowledged_at'].isoformat()}")
        if row["status"] == "resolved":
            raise InvalidInput(f"alert {alert_id} was resolved by {row['resolved_by']} at "
                               f"{row['resolved_at'].isoformat()}; a resolved alert cannot be "
                               "acknowledged")
        conn.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_by = %s, "
                     "acknowledged_at = now(), ack_note = %s WHERE alert_id = %s",
                     (user, note, alert_id))
        audit(conn, user, "acknowledged", alert_id,
               {"note": note, "level": Level(row["level"]).name.lower()})
    return get_alert_row(conn, alert_id)


def resolve(conn: psycopg.Connection, alert_id: int, *, user: str, reason: str) -> Alert:
    """open or acknowledged -> resolved, by a person, stamped with the wall clock."""
    user = required_text(user, "user")
    reason = required_text(reason, "reason")
    with conn.transaction():
        row = _lock(conn, alert_id)
        if row["status"] == "resolved":
            raise InvalidInput(f"alert {alert_id} is already resolved (by {row['resolved_by']} "
                               f"at {row['resolved_at'].isoformat()})")
        _resolve_locked(conn, row, user, reason, None)
    return get_alert_row(conn, alert_id)


def comment(conn: psycopg.Connection, alert_id: int, *, user: str, text: str,
            action: Literal["commented", "received"] = "commented") -> None:
    """A note on the alert's audit trail (what was done, who was called; "received": a
    monitor confirms the warning reached them); any status."""
    user = required_text(user, "user")
    text = required_text(text, "comment")
    with conn.transaction():
        _lock(conn, alert_id)
        audit(conn, user, action, alert_id, {"text": text})
