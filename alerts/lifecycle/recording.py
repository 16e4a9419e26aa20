"""Recording an alert event: the engine's verdict (LevelChange, validated on construction),
and the event row written with its audit-log row and its notification request in the
caller's transaction (alerts/lifecycle/writes.py decides which events happen,
alerts/lifecycle/actions.py what people and the system do to alerts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.lifecycle import outbox
from alerts.lifecycle.jsonable import jsonable
from alerts.lifecycle.queries import (
    HAZARD_KINDS,
    TARGET_TYPES,
    AlertEvent,
    EventKind,
    HazardKind,
    TargetType,
)
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput

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


def record(conn: psycopg.Connection, alert_id: int, change: LevelChange, kind: EventKind,
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
    audit(conn, actor, kind, alert_id, {
        "event_id": event.event_id, "level": change.level.name.lower(),
        "previous_level": previous.name.lower(), "data_time": change.data_time.isoformat(),
        **audit_extra})
    outbox.enqueue(conn, event)
    return event


def audit(conn: psycopg.Connection, actor: str, action: str, alert_id: int,
           detail: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO audit_log (actor, action, object_type, object_id, detail) "
                 "VALUES (%s, %s, 'alert', %s, %s)",
                 (actor, action, str(alert_id), Jsonb(jsonable(detail, "audit"))))


def required_text(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{what} must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{what} is longer than {MAX_TEXT} characters")
    return text
