"""The deliveries table: exactly once per (event, recipient, channel, round).

Protocol (what makes a SIGKILL at any instant harmless):
1. Planning inserts the rows (ON CONFLICT DO NOTHING on the unique key) in the same
   transaction that marks the outbox row done, so an event is planned once.
2. A sender claims due rows (FOR UPDATE SKIP LOCKED), sets them 'sending' with a lease and
   its name, and COMMITS before calling the provider.
3. The provider's answer is recorded afterwards ('queued' with the provider's id, or the
   outcome). A crash between 2 and 3 leaves a 'sending' row: when its lease runs out (or at
   once, for the sender that restarts under the same name) it is claimed again as uncertain,
   and the provider is asked (the delivery's tag is in the message) before anything is
   resent. When the provider cannot answer, the row becomes 'uncertain' and is not resent:
   officers see it in `geowarn notifications list` (see the README's rule).
Only the recipient's id and masked number are stored, never the full number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify.outcomes import PROVIDER_STATES, RANK, TERMINAL, Outcome
from notify.planner import PlannedDelivery

_COLS = ("delivery_id, event_id, alert_id, recipient_id, recipient_name, masked_phone, "
         "audience, channel, round, purpose, language, body, shelter_id, state, attempts, "
         "next_attempt_at, lease_until, claimed_by, provider_id, error_code, error_text, "
         "valid_until, created_at, updated_at, accepted_at")
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    event_id: int
    alert_id: int
    recipient_id: str
    recipient_name: str
    masked_phone: str | None
    audience: str
    channel: str
    round: int
    purpose: str
    language: str
    body: str
    shelter_id: str | None
    state: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    claimed_by: str | None
    provider_id: str | None
    error_code: str | None
    error_text: str | None
    valid_until: datetime
    created_at: datetime
    updated_at: datetime
    accepted_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    delivery: Delivery
    uncertain: bool  # a previous attempt may have reached the provider
    attempt_started: datetime  # when the previous attempt began (for provider look-ups)


def insert_planned(conn: psycopg.Connection, event_id: int, alert_id: int,
                   planned: Sequence[PlannedDelivery], *, valid_until: datetime,
                   now: datetime, round_: int = 0) -> int:
    """Insert the plan's rows; those already there are left alone. A recipient without a
    number for a phone channel is recorded as failed ('no_phone') so officers see it."""
    rows = []
    for p in planned:
        no_phone = p.channel in ("sms", "voice") and not p.phone
        rows.append((event_id, alert_id, p.recipient_id, p.name,
                     p.masked_phone if p.phone else None, p.audience, p.channel, round_,
                     p.purpose, p.language, p.body, p.shelter_id,
                     "failed" if no_phone else "pending", "no_phone" if no_phone else None,
                     "no phone number on record" if no_phone else None, valid_until, now))
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO deliveries (event_id, alert_id, recipient_id, recipient_name, "
            f"masked_phone, audience, channel, round, purpose, language, body, shelter_id, "
            f"state, error_code, error_text, valid_until, next_attempt_at) VALUES "
            f"({', '.join(['%s'] * 17)}) "
            f"ON CONFLICT (event_id, recipient_id, channel, round, purpose) DO NOTHING",
            rows)
        # executemany sums rowcount over the batch (psycopg 3).
        return max(cur.rowcount, 0)


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(**row)


def claim(conn: psycopg.Connection, worker: str, limit: int, *, lease: timedelta,
          now: datetime, reclaim_own: bool = False) -> list[Claimed]:
    """Claim due rows and commit the claim (the caller's connection must be autocommit or
    commit right after): pending ones, and 'sending' ones whose lease ran out (or, with
    `reclaim_own`, that this worker held before it restarted)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""WITH due AS (
                    SELECT delivery_id FROM deliveries
                    WHERE (state = 'pending' AND next_attempt_at <= %(now)s)
                       OR (state = 'sending' AND (lease_until <= %(now)s
                           OR (%(own)s AND claimed_by = %(me)s)))
                    ORDER BY next_attempt_at, delivery_id LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED)
                UPDATE deliveries d SET state = 'sending', claimed_by = %(me)s,
                    lease_until = %(now)s + %(lease)s, attempts = d.attempts + 1,
                    attempt_at = CASE WHEN old.state = 'pending' THEN %(now)s
                                      ELSE old.attempt_at END,
                    updated_at = %(now)s
                FROM due, deliveries old
                WHERE d.delivery_id = due.delivery_id AND old.delivery_id = due.delivery_id
                RETURNING {', '.join('d.' + c.strip() for c in _COLS.split(','))},
                          old.state AS old_state, old.attempt_at AS old_attempt""",
            {"now": now, "own": reclaim_own, "me": worker, "limit": limit,
             "lease": lease}).fetchall()
    out = []
    for r in rows:
        old_state, old_attempt = r.pop("old_state"), r.pop("old_attempt")
        out.append(Claimed(_delivery(r), old_state == "sending", old_attempt or now))
    out.sort(key=lambda c: c.delivery.delivery_id)
    return out


def record(conn: psycopg.Connection, delivery_id: int, worker: str, outcome: Outcome, *,
           now: datetime, attempts: int, backoff_s: float = 30.0) -> str | None:
    """Record a send's outcome if this worker still holds the claim (one conditional UPDATE);
    the new state, or None when the claim was lost (another sender took over after the lease
    ran out, or a callback already recorded the acceptance). `attempts` is the row's count
    as claimed."""
    lease: datetime | None = None
    owner: str | None = worker  # kept: who sent it (shown in listings)
    if outcome.kind == "accepted":
        state, next_at = outcome.state if outcome.state in RANK else "queued", now
    elif outcome.kind == "retry" and attempts < MAX_ATTEMPTS:
        wait = outcome.retry_after_s if outcome.retry_after_s is not None \
            else backoff_s * 2 ** (attempts - 1)
        state, next_at = "pending", now + timedelta(seconds=min(wait, 3600.0))
    elif outcome.kind == "uncertain" and attempts < MAX_ATTEMPTS:
        # Stay 'sending' with the lease ending soon: the next claim asks the provider.
        wait = outcome.retry_after_s if outcome.retry_after_s is not None else backoff_s
        state, next_at, lease = "sending", now, now + timedelta(seconds=wait)
        owner = None  # whoever claims it next asks the provider
    elif outcome.kind == "retry":
        state, next_at = "failed", now
    else:
        state, next_at = {"uncertain": "uncertain", "rejected": "rejected",
                          "failed": "failed", "expired": "expired"}[outcome.kind], now
    cur = conn.execute(
        "UPDATE deliveries SET state = %s, next_attempt_at = %s, lease_until = %s, "
        "claimed_by = %s, provider_id = coalesce(%s, provider_id), error_code = %s, "
        "error_text = %s, accepted_at = CASE WHEN %s THEN %s ELSE accepted_at END, "
        "updated_at = %s WHERE delivery_id = %s AND state = 'sending' AND claimed_by = %s",
        (state, next_at, lease, owner, outcome.provider_id, outcome.code,
         outcome.message[:500] or None, outcome.kind == "accepted", now, now, delivery_id,
         worker))
    return state if cur.rowcount else None


def advance(conn: psycopg.Connection, channel: str, provider_id: str, provider_status: str,
            error_code: str | None = None, *,
            delivery_id: int | None = None) -> tuple[int, str] | None:
    """Apply a provider status (a callback): only forward, repeats change nothing. Returns
    (delivery_id, state now) or None when no delivery matches.

    A callback may overtake the provider's answer to our request (or the answer may be lost
    in a crash): then the row is still 'sending' without a provider id, and the signed
    callback URL's delivery id finds it; the callback itself proves the provider took it."""
    new = PROVIDER_STATES.get(provider_status)
    with conn.transaction():
        row = conn.execute("SELECT delivery_id, state FROM deliveries WHERE channel = %s AND "
                           "provider_id = %s FOR UPDATE", (channel, provider_id)).fetchone()
        if row is None and delivery_id is not None:
            # Lock by id alone: a concurrent callback may be recording the id right now.
            found = conn.execute("SELECT delivery_id, state, provider_id FROM deliveries "
                                 "WHERE delivery_id = %s AND channel = %s FOR UPDATE",
                                 (delivery_id, channel)).fetchone()
            row = None
            if found is not None and found[2] == provider_id:
                row = (found[0], found[1])
            elif found is not None and found[2] is None and found[1] in ("sending",
                                                                         "pending"):
                conn.execute("UPDATE deliveries SET provider_id = %s, state = 'queued', "
                             "lease_until = NULL, accepted_at = now(), updated_at = now() "
                             "WHERE delivery_id = %s", (provider_id, found[0]))
                row = (found[0], "queued")
        if row is None:
            return None
        found_id, state = int(row[0]), str(row[1])
        if new is None or state in TERMINAL or RANK[new] <= RANK.get(state, 0) \
                or state in ("pending", "sending"):
            return found_id, state
        conn.execute("UPDATE deliveries SET state = %s, error_code = coalesce(%s, error_code),"
                     " updated_at = now() WHERE delivery_id = %s",
                     (new, error_code, found_id))
    return found_id, new


def list_deliveries(conn: psycopg.Connection, *, alert_id: int | None = None,
                    limit: int = 1000) -> list[Delivery]:
    sql = f"SELECT {_COLS} FROM deliveries"
    params: list[Any] = []
    if alert_id is not None:
        sql += " WHERE alert_id = %s"
        params.append(alert_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql + " ORDER BY delivery_id LIMIT %s", [*params, limit]).fetchall()
    return [_delivery(r) for r in rows]


def get(conn: psycopg.Connection, delivery_id: int) -> Delivery | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {_COLS} FROM deliveries WHERE delivery_id = %s",
                          (delivery_id,)).fetchone()
    return None if row is None else _delivery(row)


def stats(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for channel, state, n in conn.execute(
            "SELECT channel, state, count(*) FROM deliveries GROUP BY 1, 2 ORDER BY 1, 2"):
        out.setdefault(channel, {})[state] = int(n)
    return out
