"""The read side of the alert lifecycle: the records alerts/lifecycle/writes.py returns, listings,
one alert's full story (level history, evidence, audit trail), and their JSON form.

Alerts on a hazard point (target_type "hazard") carry the point's name and county code from
hazard_points; sites and devices are shown by their id (name None). Levels appear in JSON as
lowercase colour names ("none", "blue", "yellow", "orange", "red"), the same words the CLI's
--min-level takes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts.methods.levels import Level
from geowarn.errors import InvalidInput, NotFound

HazardKind = Literal["rainfall", "deformation", "water_level", "water_quality", "air_quality",
                     "combined", "maintenance", "data_quality"]
TargetType = Literal["hazard", "site", "device"]  # hazard point (隐患点), monitoring site, device
AlertStatus = Literal["open", "acknowledged", "resolved"]
EventKind = Literal["opened", "raised", "lowered", "cleared", "resolved", "updated"]

HAZARD_KINDS: tuple[str, ...] = get_args(HazardKind)
TARGET_TYPES: tuple[str, ...] = get_args(TargetType)
STATUSES: tuple[str, ...] = get_args(AlertStatus)
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class AlertEvent:
    """One step of an alert's level history (or its resolution)."""

    event_id: int
    alert_id: int
    target_type: TargetType
    target_id: str
    hazard_kind: HazardKind
    kind: EventKind
    level: Level
    previous_level: Level
    data_time: datetime
    recorded_at: datetime
    actor: str
    evidence: Mapping[str, Any]


@dataclass(frozen=True)
class Alert:
    alert_id: int
    target_type: TargetType
    target_id: str
    target_name: str | None  # hazard point name; None for sites, devices, unknown points
    county_code: str | None
    hazard_kind: HazardKind
    status: AlertStatus
    level: Level  # what the data last said (NONE once cleared)
    peak_level: Level
    opened_at: datetime  # data time of the opening change
    last_data_time: datetime  # data time of the latest level change
    engine: str
    recorded_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_reason: str | None
    # Hazard points only (gis hazard_points): who is threatened; None for sites and devices.
    threatened_households: int | None = None
    threatened_people: int | None = None
    # The exercise (演练) this alert is a drill of (migration 0130); None for a live alert.
    exercise: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AlertDetail:
    alert: Alert
    events: tuple[AlertEvent, ...]
    audit: tuple[AuditEntry, ...]


ALERT_COLUMNS = """a.alert_id, a.target_type, a.target_id, h.name AS target_name,
    h.county_code, a.hazard_kind, a.status, a.level, a.peak_level, a.opened_at,
    a.last_data_time, a.engine, a.recorded_at, a.acknowledged_by, a.acknowledged_at,
    a.ack_note, a.resolved_by, a.resolved_at, a.resolve_reason,
    h.households AS threatened_households, h.people AS threatened_people, a.exercise"""
ALERT_FROM = """alerts a LEFT JOIN hazard_points h
    ON a.target_type = 'hazard' AND h.hazard_id = a.target_id"""
EVENT_COLUMNS = """e.event_id, e.alert_id, a.target_type, a.target_id, a.hazard_kind, e.kind,
    e.level, e.previous_level, e.data_time, e.recorded_at, e.actor, e.evidence"""


def alert_from_row(row: Mapping[str, Any]) -> Alert:
    values = {k: row[k] for k in Alert.__dataclass_fields__}
    values["level"] = Level(row["level"])
    values["peak_level"] = Level(row["peak_level"])
    return Alert(**values)


def event_from_row(row: Mapping[str, Any]) -> AlertEvent:
    values = {k: row[k] for k in AlertEvent.__dataclass_fields__}
    values["level"] = Level(row["level"])
    values["previous_level"] = Level(row["previous_level"])
    return AlertEvent(**values)


def level_name(level: Level) -> str:
    return level.name.lower()


def parse_level(text: str | int | Level) -> Level:
    """A level from a colour name ("yellow"), a Roman grade ("III") or its number (2)."""
    if isinstance(text, int):
        try:
            return Level(text)
        except ValueError:
            raise InvalidInput(f"level {text} is out of range 0..4") from None
    key = text.strip()
    for level in Level:
        if key.lower() == level.name.lower() or (level.grade and key.upper() == level.grade):
            return level
    raise InvalidInput(f"unknown level {text!r}: use none, blue, yellow, orange or red "
                       "(or IV, III, II, I)")


def get_alert_row(conn: psycopg.Connection, alert_id: int) -> Alert:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE a.alert_id = %s",
                          (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return alert_from_row(row)


def get_alert(conn: psycopg.Connection, alert_id: int) -> AlertDetail:
    """The alert, its level history (data times and evidence) and its audit trail."""
    return with_history(conn, [get_alert_row(conn, alert_id)])[0]


def with_history(conn: psycopg.Connection, alerts: Sequence[Alert]) -> list[AlertDetail]:
    """AlertDetail for each alert, in order, with two queries however many there are."""
    ids = [a.alert_id for a in alerts]
    with conn.cursor(row_factory=dict_row) as cur:
        event_rows = cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM alert_events e JOIN alerts a USING (alert_id) "
            "WHERE e.alert_id = ANY(%s) ORDER BY e.event_id", (ids,)).fetchall()
        audit_rows = cur.execute(
            "SELECT object_id, at, actor, action, detail FROM audit_log "
            "WHERE object_type = 'alert' AND object_id = ANY(%s) ORDER BY at, id",
            ([str(i) for i in ids],)).fetchall()
    events: dict[int, list[AlertEvent]] = {i: [] for i in ids}
    for row in event_rows:
        events[row["alert_id"]].append(event_from_row(row))
    audit: dict[int, list[AuditEntry]] = {i: [] for i in ids}
    for row in audit_rows:
        audit[int(row.pop("object_id"))].append(AuditEntry(**row))
    return [AlertDetail(alert=a, events=tuple(events[a.alert_id]),
                        audit=tuple(audit[a.alert_id])) for a in alerts]


def list_alerts(
    conn: psycopg.Connection,
    *,
    status: str | Sequence[str] | None = None,
    target_id: str | None = None,
    hazard_kind: str | None = None,
    min_level: Level | str | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    county: str | None = None,
    county_prefixes: Sequence[str] | None = None,
    include_no_county: bool = True,
    exercise: str | None = None,
    oldest_first: bool = False,
    limit: int = 100,
) -> list[Alert]:
    """Alerts matching every filter given, most urgent first (unresolved before resolved, then
    higher current level, then the latest data first, or with `oldest_first` the longest
    open first: a duty room's queue).

    `status`: one status, several, or None for all. `min_level` compares the current level
    (NONE once the data cleared; a resolved alert keeps the level it had when resolved).
    `since`: alerts touched at or after that time, i.e. whose latest level change (data time)
    or resolution is not earlier; `until`: latest level change before that time.
    `county_prefixes`: only alerts whose hazard point's county code starts with one of them
    (a user's scope), and, unless `include_no_county` is false, those with no county.
    `exercise`: only the drills of that exercise.
    """
    conditions: list[sql.Composable] = []
    params: list[Any] = []

    def add(condition: str, *values: Any) -> None:
        conditions.append(sql.SQL(condition))  # built from literals only, values are params
        params.extend(values)

    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        for s in wanted:
            if s not in STATUSES:
                raise InvalidInput(f"unknown alert status {s!r} (known: {', '.join(STATUSES)})")
        add("a.status = ANY(%s)", wanted)
    if hazard_kind is not None and hazard_kind not in HAZARD_KINDS:
        raise InvalidInput(f"unknown hazard kind {hazard_kind!r} "
                           f"(known: {', '.join(HAZARD_KINDS)})")
    for column, value in (("a.target_id", target_id), ("a.hazard_kind", hazard_kind),
                          ("h.county_code", county), ("a.exercise", exercise)):
        if value is not None:
            add(f"{column} = %s", value)
    if min_level is not None:
        add("a.level >= %s", int(parse_level(min_level)))
    for name, when in (("since", since), ("until", until)):
        if when is not None and when.tzinfo is None:
            raise InvalidInput(f"{name} {when.isoformat()} needs a time zone")
    if since is not None:
        add("(a.last_data_time >= %s OR a.resolved_at >= %s)", since, since)
    if until is not None:
        add("a.last_data_time < %s", until)
    if county_prefixes is not None:
        add("(h.county_code LIKE ANY(%s) OR h.county_code IS NULL)" if include_no_county
            else "h.county_code LIKE ANY(%s)", [p + "%" for p in county_prefixes])
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit {limit} is out of range 1..{MAX_LIMIT}")
    where = (sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
    order = ("a.opened_at, a.alert_id" if oldest_first
             else "a.last_data_time DESC, a.alert_id DESC")
    query = (sql.SQL(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM}") + where + sql.SQL(
        f" ORDER BY a.status = 'resolved', a.level DESC, {order} LIMIT %s"))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, [*params, limit]).fetchall()
    return [alert_from_row(r) for r in rows]


# --- JSON form (CLI --json, and the API later) ---------------------------------------------

def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.alert_id,
        "target": {"type": alert.target_type, "id": alert.target_id, "name": alert.target_name,
                   "county_code": alert.county_code,
                   **({"threatened": {"households": alert.threatened_households,
                                      "people": alert.threatened_people}}
                      if alert.threatened_people is not None else {})},
        "hazard_kind": alert.hazard_kind,
        "status": alert.status,
        "level": level_name(alert.level),
        "peak_level": level_name(alert.peak_level),
        "opened_at": _time(alert.opened_at),
        "last_data_time": _time(alert.last_data_time),
        "recorded_at": _time(alert.recorded_at),
        "engine": alert.engine,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": _time(alert.acknowledged_at),
        "ack_note": alert.ack_note,
        "resolved_by": alert.resolved_by,
        "resolved_at": _time(alert.resolved_at),
        "resolve_reason": alert.resolve_reason,
        # A drill must never pass for a live warning: every consumer sees which it is.
        "exercise": alert.exercise,
    }


def event_json(event: AlertEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "kind": event.kind,
        "level": level_name(event.level),
        "previous_level": level_name(event.previous_level),
        "data_time": _time(event.data_time),
        "recorded_at": _time(event.recorded_at),
        "actor": event.actor,
        "evidence": dict(event.evidence),
    }


def detail_json(detail: AlertDetail) -> dict[str, Any]:
    out = alert_json(detail.alert)
    out["events"] = [event_json(e) for e in detail.events]
    out["audit"] = [{"at": _time(a.at), "actor": a.actor, "action": a.action,
                     "detail": json.loads(json.dumps(a.detail, default=str))}
                    for a in detail.audit]
    return out
