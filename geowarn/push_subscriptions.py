"""Web Push subscriptions of directory people, and the VAPID public key browsers subscribe
with.

Shared by two siblings that may not import each other (tests/test_layers.py): the API
registers a console user's subscription (api/routers/push.py), notify's push channel reads
them and drops those the push service says are gone. So the table's one set of rules lives
here, below both.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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


def deactivate(conn: psycopg.Connection, endpoint: str, *,
               person_id: str | None = None) -> bool:
    """Stop sending to `endpoint` (gone at the push service, or, with `person_id`, its owner
    unsubscribed); False when there was no such active subscription."""
    cur = conn.execute("UPDATE push_subscriptions SET active = false WHERE endpoint = %s "
                       "AND active AND (%s::text IS NULL OR person_id = %s)",
                       (endpoint, person_id, person_id))
    return cur.rowcount > 0


def vapid_public_key(path: Path) -> str:
    """The browser's applicationServerKey for the VAPID private key (PEM) at `path`:
    base64url of the uncompressed P-256 point."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{path} is not a VAPID (P-256) private key")
    raw = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
