"""The alert lifecycle: what the warning engine's level changes do to alerts, and what people
do to them (acknowledge, resolve). Reads live in alerts/lifecycle/queries.py (re-exported).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.lifecycle import outbox
from alerts.lifecycle.jsonable import jsonable
from alerts.lifecycle.queries import (
    HAZARD_KINDS,
    TARGET_TYPES,
    Alert,
    AlertDetail,
    AlertEvent,
    EventKind,
    HazardKind,
    TargetType,
    get_alert,
    get_alert_row,
    list_alerts,
    parse_level,
)
from alerts.methods.levels import Level
from geowarn.errors import GeoWarnError, InvalidInput, NotFound

__all__ = ["Alert", "AlertDetail", "AlertEvent", "HazardKind", "LevelChange", "TargetType",
           "acknowledge", "apply_changes", "auto_resolve", "get_alert", "list_alerts",
           "parse_level", "resolve"]

log = logging.getLogger(__name__)
MAX_TEXT = 2000


@dataclass(frozen=True)
class LevelChange:
    """The engine's verdict for one key at one data time. `evidence` (channels, values,
    windows, thresholds, forecast failure time and band, regional floor, ...) must be JSON:
    numpy scalars and arrays and aware datetimes are converted, NaN/Infinity are refused."""

    target_type: TargetType
    target_id: str
    hazard_kind: HazardKind
    level: Level  # NONE means "back below the clear threshold"
    data_time: datetime  # event time of the data that caused it
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # Not None: the same level with new evidence (a refreshed forecast): an "updated" event,
    # written only if the alert had no event within this many seconds before (data time).
    update_every_s: float | None = None

    def __post_init__(self) -> None:
        what = f"level change for {self.target_type} {self.target_id!r}"
        if self.update_every_s is not None and not (
                isinstance(self.update_every_s, int | float) and self.update_every_s >= 0):
            raise InvalidInput(f"{what}: update_every_s must be a number >= 0 or None, got "
                               f"{self.update_every_s!r}")
        if self.target_type not in TARGET_TYPES:
            raise InvalidInput(f"{what}: unknown target type {self.target_type!r} "
                               f"(known: {', '.join(TARGET_TYPES)})")
        if not isinstance(self.target_id, str) or not self.target_id.strip() \
                or len(self.target_id) > 128:
            raise InvalidInput(f"{what}: target id must be 1-128 characters")
        if self.hazard_kind not in HAZARD_KINDS:
            raise InvalidInput(f"{what}: unknown hazard kind {self.hazard_kind!r} "
                               f"(known: {', '.join(HAZARD_KINDS)})")
        try:
            level = Level(int(self.level))
        except (TypeError, ValueError):
            raise InvalidInput(f"{what}: level {self.level!r} is not 0..4") from None
        if not isinstance(self.data_time, datetime) or self.data_time.tzinfo is None:
            raise InvalidInput(f"{what}: data_time must be a timezone-aware datetime, got "
                               f"{self.data_time!r}")
        if not isinstance(self.evidence, Mapping):
            raise InvalidInput(f"{what}: evidence must be a mapping")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "data_time", self.data_time.astimezone(UTC))
        object.__setattr__(self, "evidence", jsonable(self.evidence, "evidence"))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target_type, self.target_id, self.hazard_kind)


# --- engine side ---------------------------------------------------------------------------

def apply_changes(conn: psycopg.Connection, changes: Sequence[LevelChange], *,
                  engine: str = "engine") -> list[AlertEvent]:
    """Apply a batch of level changes in one transaction; the events written (replayed,
    stale and same-level changes write none)."""
    engine = _required_text(engine, "engine name")
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
            return _record(conn, row[0], change, "opened", Level.NONE, engine, {})
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
        return _record(conn, alert["alert_id"], change, kind, previous, engine, extra)
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
    return _record(conn, alert_id, change, "updated", change.level, engine, {})


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


def _record(conn: psycopg.Connection, alert_id: int, change: LevelChange, kind: EventKind,
            previous: Level, actor: str, audit_extra: Mapping[str, Any]) -> AlertEvent:
    """Insert the event, its audit row and its notification request."""
    row = conn.execute(
        "INSERT INTO alert_events (alert_id, kind, level, previous_level, data_time, actor, "
        "evidence) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING event_id, recorded_at",
        (alert_id, kind, int(change.level), int(previous), change.data_time, actor,
         Jsonb(change.evidence))).fetchone()
    assert row is not None
    event = AlertEvent(event_id=row[0], alert_id=alert_id, target_type=change.target_type,
                       target_id=change.target_id, hazard_kind=change.hazard_kind, kind=kind,
                       level=change.level, previous_level=previous,
                       data_time=change.data_time, recorded_at=row[1], actor=actor,
                       evidence=change.evidence)
    _audit(conn, actor, kind, alert_id, {
        "event_id": event.event_id, "level": change.level.name.lower(),
        "previous_level": previous.name.lower(), "data_time": change.data_time.isoformat(),
        **audit_extra})
    outbox.enqueue(conn, event)
    return event


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
    return _record(conn, row["alert_id"], change, "resolved", Level(row["level"]), actor,
                   {"reason": reason})


# --- people side ---------------------------------------------------------------------------

def _required_text(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{what} must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{what} is longer than {MAX_TEXT} characters")
    return text


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
    user = _required_text(user, "user")
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
        _audit(conn, user, "acknowledged", alert_id,
               {"note": note, "level": Level(row["level"]).name.lower()})
    return get_alert_row(conn, alert_id)


def resolve(conn: psycopg.Connection, alert_id: int, *, user: str, reason: str) -> Alert:
    """open or acknowledged -> resolved, by a person, stamped with the wall clock."""
    user = _required_text(user, "user")
    reason = _required_text(reason, "reason")
    with conn.transaction():
        row = _lock(conn, alert_id)
        if row["status"] == "resolved":
            raise InvalidInput(f"alert {alert_id} is already resolved (by {row['resolved_by']} "
                               f"at {row['resolved_at'].isoformat()})")
        _resolve_locked(conn, row, user, reason, None)
    return get_alert_row(conn, alert_id)


def _audit(conn: psycopg.Connection, actor: str, action: str, alert_id: int,
           detail: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO audit_log (actor, action, object_type, object_id, detail) "
                 "VALUES (%s, %s, 'alert', %s, %s)",
                 (actor, action, str(alert_id), Jsonb(jsonable(detail, "audit"))))


def comment(conn: psycopg.Connection, alert_id: int, *, user: str, text: str,
            action: Literal["commented", "received"] = "commented") -> None:
    """A note on the alert's audit trail (what was done, who was called; "received": a
    monitor confirms the warning reached them); any status."""
    user = _required_text(user, "user")
    text = _required_text(text, "comment")
    with conn.transaction():
        _lock(conn, alert_id)
        _audit(conn, user, action, alert_id, {"text": text})
