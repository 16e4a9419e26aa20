"""Web Push subscriptions of directory people (the console registers them; the API later)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from geowarn.errors import InvalidInput, NotFound


def subscribe(conn: psycopg.Connection, person_id: str, endpoint: str, p256dh: str,
              auth: str) -> int:
    if not endpoint.startswith(("https://", "http://")):
        raise InvalidInput(f"push endpoint must be an http(s) URL, got {endpoint[:40]!r}")
    if not p256dh or not auth:
        raise InvalidInput("a push subscription needs its p256dh and auth keys")
    if conn.execute("SELECT 1 FROM people WHERE person_id = %s", (person_id,)).fetchone() \
            is None:
        raise NotFound(f"person {person_id!r} is not in the directory")
    row = conn.execute(
        "INSERT INTO push_subscriptions (person_id, endpoint, p256dh, auth) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (endpoint) DO UPDATE SET person_id = "
        "EXCLUDED.person_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth, active = true "
        "RETURNING id", (person_id, endpoint, p256dh, auth)).fetchone()
    assert row is not None
    return int(row[0])


def subscriptions(conn: psycopg.Connection, recipient_id: str) -> Sequence[dict[str, Any]]:
    kind, _, person_id = recipient_id.partition(":")
    if kind != "person":
        return []
    rows = conn.execute("SELECT endpoint, p256dh, auth FROM push_subscriptions "
                        "WHERE person_id = %s AND active ORDER BY id", (person_id,)).fetchall()
    return [{"endpoint": e, "keys": {"p256dh": k, "auth": a}} for e, k, a in rows]


def people_with_push(conn: psycopg.Connection) -> set[str]:
    return {f"person:{r[0]}" for r in conn.execute(
        "SELECT DISTINCT person_id FROM push_subscriptions WHERE active")}


def deactivate(conn: psycopg.Connection, endpoint: str) -> None:
    conn.execute("UPDATE push_subscriptions SET active = false WHERE endpoint = %s",
                 (endpoint,))
