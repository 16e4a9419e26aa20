"""The alert lifecycle: what the warning engine's level changes do to alerts (here), and what
people do to them (acknowledge, resolve: alerts/lifecycle/actions.py); an event is written by
alerts/lifecycle/recording.py. Reads live in alerts/lifecycle/queries.py. All are re-exported.

Rules, per (target_type, target_id, hazard_kind) — a "key":

- At most ONE open alert (status open or acknowledged) per key, enforced by a partial unique
  index; opening inserts with ON CONFLICT against it, so two engines racing to open the same
  alert end up with one (the loser re-reads and finds the winner's; retried once).
- A LevelChange with level > NONE and no open alert opens one (event "opened"). With an open
  alert at another level it adds "raised" or "lowered" and updates the alert's current and
  peak level. NONE adds "cleared": the alert stays open (level NONE) until auto_resolve, a
  person resolves it, or the level rises again ("raised" from NONE). A change to the level the
  alert already has is a no-op, unless it is an update (`update_every_s` set: the engine
  refreshed a forecast at the same level): then an "updated" event with the new evidence, at
  most one per `update_every_s` of data time after the alert's newest event (level or
  update); it changes neither the level nor the acknowledgement. NONE with no open alert is
  a no-op.
- Idempotent: a change whose (key, data_time, level) already has an event, in any alert of
  the key, is a replay and writes nothing (an engine restarted mid-tick replays its changes).
  A change older (data time) than the latest level change of the key's latest alert is stale
  and ignored with a warning: newer data has already decided, and lowering a red alert on
  old data would be dangerous. A batch is applied in one transaction, sorted by key and data
  time (so concurrent engines lock alerts in the same order and cannot deadlock). Like every
  function here it commits on its own, unless the caller already has a transaction open: then
  it runs in a savepoint and the caller's commit decides (psycopg's conn.transaction()).
- acknowledge: open -> acknowledged (who, when, note). A level RISE of an acknowledged alert
  (including from cleared) puts it back to open and withdraws the acknowledgement (a person
  must look again; the earlier one stays in the audit trail); lowering or clearing keeps it.
- resolve: open or acknowledged -> resolved (who, when, why), adding a "resolved" event; a later
  LevelChange > NONE for the key opens a NEW alert. Invalid transitions raise InvalidInput,
  unknown ids NotFound.
- auto_resolve(data_time, quiet): open alerts whose latest level change is "cleared" at a data
  time at least `quiet` before `data_time` are resolved by "system", at `data_time` (event time,
  so replays give identical rows). A person's resolution is stamped with the wall clock.
- Every transition writes audit_log (object_type 'alert', the actor: engine name, user or
  "system"), and every event one notification_outbox row, in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from alerts.lifecycle.actions import acknowledge, auto_resolve, comment, format_duration, resolve
from alerts.lifecycle.queries import (
    Alert,
    AlertDetail,
    AlertEvent,
    EventKind,
    HazardKind,
    TargetType,
    get_alert,
    list_alerts,
    parse_level,
)
from alerts.lifecycle.recording import LevelChange, record, required_text
from alerts.methods.levels import Level
from geowarn.errors import GeoWarnError, InvalidInput

# The lifecycle's whole surface, for callers that import this one module.
__all__ = ["Alert", "AlertDetail", "AlertEvent", "HazardKind", "LevelChange", "TargetType",
           "acknowledge", "apply_changes", "auto_resolve", "comment", "format_duration",
           "get_alert", "list_alerts", "parse_level", "resolve"]

log = logging.getLogger(__name__)


# --- engine side ---------------------------------------------------------------------------

def apply_changes(conn: psycopg.Connection, changes: Sequence[LevelChange], *,
                  engine: str = "engine") -> list[AlertEvent]:
    """Apply a batch of level changes in one transaction; the events written (replayed,
    stale and same-level changes write none)."""
    engine = required_text(engine, "engine name")
    for i, change in enumerate(changes):
        if not isinstance(change, LevelChange):
            raise InvalidInput(f"change {i} is a {type(change).__name__}, not a LevelChange")
    ordered = sorted(changes, key=lambda c: (*c.key, c.data_time))
    events: list[AlertEvent] = []
    with conn.transaction():
        for change in ordered:
            event = _apply_one(conn, change, engine)
            if event is not None:
                events.append(event)
    return events


_OPEN_ALERT = """SELECT alert_id, status, level, peak_level, last_data_time, acknowledged_by,
    acknowledged_at FROM alerts
    WHERE target_type = %s AND target_id = %s AND hazard_kind = %s AND status <> 'resolved'
    FOR UPDATE"""


def _apply_one(conn: psycopg.Connection, change: LevelChange, engine: str) -> AlertEvent | None:
    # Two rounds: when the insert loses a race to another engine, the second round finds the
    # alert that engine opened (its transaction has committed by then) and continues on it.
    for _ in range(2):
        with conn.cursor(row_factory=dict_row) as cur:
            alert = cur.execute(_OPEN_ALERT, change.key).fetchone()
        if _is_replay(conn, change):
            log.debug("replayed change ignored: %s", change)
            return None
        if alert is None:
            if change.level == Level.NONE:
                return None
            latest = _latest_level_time(conn, change)
            if latest is not None and change.data_time < latest:
                _warn_stale(change, latest)
                return None
            row = conn.execute(
                "INSERT INTO alerts (target_type, target_id, hazard_kind, level, peak_level, "
                "opened_at, last_data_time, engine) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (target_type, target_id, hazard_kind) WHERE status <> 'resolved' "
                "DO NOTHING RETURNING alert_id",
                (*change.key, int(change.level), int(change.level), change.data_time,
                 change.data_time, engine)).fetchone()
            if row is None:
                continue
            return record(conn, row[0], change, "opened", Level.NONE, engine, {})
        if change.data_time < alert["last_data_time"]:
            _warn_stale(change, alert["last_data_time"])
            return None
        previous = Level(alert["level"])
        if change.level == previous:
            return _update(conn, alert["alert_id"], change, engine)
        kind: EventKind = ("cleared" if change.level == Level.NONE
                           else "raised" if change.level > previous else "lowered")
        withdrawn = kind == "raised" and alert["status"] == "acknowledged"
        conn.execute(
            "UPDATE alerts SET level = %s, peak_level = greatest(peak_level, %s), "
            "last_data_time = %s, status = CASE WHEN %s THEN 'open' ELSE status END, "
            "acknowledged_by = CASE WHEN %s THEN NULL ELSE acknowledged_by END, "
            "acknowledged_at = CASE WHEN %s THEN NULL ELSE acknowledged_at END, "
            "ack_note = CASE WHEN %s THEN NULL ELSE ack_note END WHERE alert_id = %s",
            (int(change.level), int(change.level), change.data_time, withdrawn, withdrawn,
             withdrawn, withdrawn, alert["alert_id"]))
        extra = ({"acknowledgement_withdrawn": {"by": alert["acknowledged_by"],
                                                "at": alert["acknowledged_at"].isoformat()}}
                 if withdrawn else {})
        return record(conn, alert["alert_id"], change, kind, previous, engine, extra)
    raise GeoWarnError(f"could not open or find the open {change.hazard_kind} alert for "
                       f"{change.target_type} {change.target_id!r}: it changed under us twice")


def _update(conn: psycopg.Connection, alert_id: int, change: LevelChange, engine: str
            ) -> AlertEvent | None:
    """A same-level change: nothing, unless it is an update (new evidence) and the alert's
    newest event is at least `update_every_s` older; then an "updated" event."""
    if change.update_every_s is None or change.level == Level.NONE:
        return None
    row = conn.execute("SELECT max(data_time) FROM alert_events WHERE alert_id = %s AND "
                       "kind <> 'resolved'", (alert_id,)).fetchone()
    latest = row[0] if row else None
    if latest is not None and (change.data_time <= latest or (
            change.data_time - latest).total_seconds() < change.update_every_s):
        return None
    return record(conn, alert_id, change, "updated", change.level, engine, {})


def _is_replay(conn: psycopg.Connection, change: LevelChange) -> bool:
    row = conn.execute(
        "SELECT 1 FROM alert_events e JOIN alerts a USING (alert_id) "
        "WHERE a.target_type = %s AND a.target_id = %s AND a.hazard_kind = %s "
        "AND e.kind <> 'resolved' AND e.data_time = %s AND e.level = %s LIMIT 1",
        (*change.key, change.data_time, int(change.level))).fetchone()
    return row is not None


def _latest_level_time(conn: psycopg.Connection, change: LevelChange) -> datetime | None:
    row = conn.execute(
        "SELECT last_data_time FROM alerts WHERE target_type = %s AND target_id = %s "
        "AND hazard_kind = %s ORDER BY alert_id DESC LIMIT 1", change.key).fetchone()
    return None if row is None else row[0]


def _warn_stale(change: LevelChange, latest: datetime) -> None:
    log.warning("stale level change ignored: %s %s %s -> %s at %s, but the key already "
                "changed at %s", change.target_type, change.target_id, change.hazard_kind,
                change.level.name, change.data_time.isoformat(), latest.isoformat())
