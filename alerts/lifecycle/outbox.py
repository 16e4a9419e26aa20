"""The notification outbox: one request per alert level-change event, to be sent later.

alerts/lifecycle/writes.py calls `enqueue` in the same transaction that writes the event, so a
notification exists exactly when its event does; `event_id` is unique, so a replayed event
never notifies twice. Sending is not done here.

Senders share the table: `claim_pending` takes due rows with FOR UPDATE SKIP LOCKED, so two
senders never get the same row, and also leases them (attempts + 1, next_attempt_at pushed to
now + lease). Within one transaction the row lock alone protects the row; the lease protects
it after a commit, for senders that claim in one transaction and report in another. A sender
that dies holding a lease loses it when it expires, so delivery is at least once. `mark_sent`
and `mark_failed` report the outcome; a failure is retried with exponential backoff and
jitter until `max_attempts`, then the row is given up ("failed").

Times here are wall-clock (the database's now() unless given): delivery is a real-time
activity, unlike the alert history, which runs on data time.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from alerts.lifecycle.queries import AlertEvent
from alerts.methods.levels import Level
from geowarn.errors import InvalidInput, NotFound

OutboxState = Literal["pending", "sent", "failed"]
MAX_ERROR_CHARS = 2000
MAX_CLAIM = 1000


@dataclass(frozen=True)
class OutboxItem:
    id: int
    event_id: int
    alert_id: int
    target_type: str
    target_id: str
    hazard_kind: str
    event_kind: str
    level: Level
    previous_level: Level
    data_time: datetime
    created_at: datetime
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Backoff:
    """Retry delay after the n-th failed attempt: base * 2**(n-1), at most `cap`, then up to
    `jitter` of it added at random so that senders failing together do not retry together."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.2
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.cap < self.base:
            raise InvalidInput(f"backoff needs 0 < base <= cap, got base {self.base}, "
                               f"cap {self.cap}")
        if not 0 <= self.jitter <= 1:
            raise InvalidInput(f"backoff jitter {self.jitter} is out of range 0..1")
        if self.max_attempts < 1:
            raise InvalidInput(f"max_attempts {self.max_attempts} must be at least 1")

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        exponent = min(max(attempts, 1) - 1, 30)  # 2**30 * base is beyond any cap
        plain = min(self.base * (2 ** exponent), self.cap)
        return plain * (1 + self.jitter * (rng or random).random())


_COLUMNS = """id, event_id, alert_id, target_type, target_id, hazard_kind, event_kind, level,
    previous_level, data_time, created_at, state, attempts, next_attempt_at, sent_at,
    last_error"""


def _item(row: Mapping[str, Any]) -> OutboxItem:
    values = dict(row)
    values["level"] = Level(row["level"])
    values["previous_level"] = Level(row["previous_level"])
    return OutboxItem(**values)


def enqueue(conn: psycopg.Connection, event: AlertEvent) -> int | None:
    """Queue a notification for `event`; the outbox id, or None when it was already queued."""
    row = conn.execute(
        "INSERT INTO notification_outbox (event_id, alert_id, target_type, target_id, "
        "hazard_kind, event_kind, level, previous_level, data_time) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING "
        "RETURNING id",
        (event.event_id, event.alert_id, event.target_type, event.target_id, event.hazard_kind,
         event.kind, int(event.level), int(event.previous_level), event.data_time)).fetchone()
    return None if row is None else int(row[0])


def claim_pending(conn: psycopg.Connection, limit: int, *,
                  lease: timedelta = timedelta(minutes=5),
                  now: datetime | None = None) -> list[OutboxItem]:
    """Up to `limit` due pending rows, oldest first, locked (SKIP LOCKED) and leased."""
    if not 1 <= limit <= MAX_CLAIM:
        raise InvalidInput(f"claim limit {limit} is out of range 1..{MAX_CLAIM}")
    if lease <= timedelta(0):
        raise InvalidInput(f"lease {lease} must be positive")
    _check_aware(now)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""WITH due AS (
                    SELECT id FROM notification_outbox
                    WHERE state = 'pending' AND next_attempt_at <= coalesce(%s, now())
                    ORDER BY next_attempt_at, id LIMIT %s
                    FOR UPDATE SKIP LOCKED)
                UPDATE notification_outbox o
                SET attempts = o.attempts + 1,
                    next_attempt_at = coalesce(%s, now()) + %s
                FROM due WHERE o.id = due.id
                RETURNING {', '.join('o.' + c.strip() for c in _COLUMNS.split(','))}""",
            (now, limit, now, lease)).fetchall()
    return sorted((_item(r) for r in rows), key=lambda i: (i.created_at, i.id))


def _check_aware(now: datetime | None) -> None:
    if now is not None and now.tzinfo is None:
        raise InvalidInput(f"time {now.isoformat()} needs a time zone")


def _pending_row(conn: psycopg.Connection, item_id: int, action: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_COLUMNS} FROM notification_outbox WHERE id = %s FOR UPDATE",
                          (item_id,)).fetchone()
    if row is None:
        raise NotFound(f"notification {item_id} does not exist")
    if row["state"] != "pending":
        raise InvalidInput(f"cannot mark notification {item_id} {action}: it is already "
                           f"{row['state']}")
    if row["attempts"] == 0:
        raise InvalidInput(f"cannot mark notification {item_id} {action}: it was never claimed")
    return row


def mark_sent(conn: psycopg.Connection, item_id: int, *,
              now: datetime | None = None) -> OutboxItem:
    """Record a successful delivery of a claimed row."""
    _check_aware(now)
    with conn.transaction():
        _pending_row(conn, item_id, "sent")
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"UPDATE notification_outbox SET state = 'sent', sent_at = coalesce(%s, now()) "
                f"WHERE id = %s RETURNING {_COLUMNS}", (now, item_id)).fetchone()
    assert row is not None
    return _item(row)


def mark_failed(conn: psycopg.Connection, item_id: int, error: str, *,
                backoff: Backoff | None = None, now: datetime | None = None,
                rng: random.Random | None = None) -> OutboxItem:
    """Record a failed delivery: retried after a backoff, or given up ("failed") once it has
    had `backoff.max_attempts` attempts."""
    _check_aware(now)
    if not error.strip():
        raise InvalidInput("say why the notification failed (error must not be empty)")
    policy = backoff or Backoff()
    with conn.transaction():
        row = _pending_row(conn, item_id, "failed")
        give_up = row["attempts"] >= policy.max_attempts
        delay = timedelta(0) if give_up else policy.delay(row["attempts"], rng)
        with conn.cursor(row_factory=dict_row) as cur:
            updated = cur.execute(
                f"""UPDATE notification_outbox
                    SET state = %s, last_error = %s,
                        next_attempt_at = coalesce(%s, now()) + %s
                    WHERE id = %s RETURNING {_COLUMNS}""",
                ("failed" if give_up else "pending", error[:MAX_ERROR_CHARS], now, delay,
                 item_id)).fetchone()
    assert updated is not None
    return _item(updated)


def pending_count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM notification_outbox WHERE state = 'pending'"
                       ).fetchone()
    return int(row[0]) if row else 0
