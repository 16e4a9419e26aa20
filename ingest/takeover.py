"""Handing a dead gateway's share to a live one.

Gateways of one group split the stream with an MQTT shared subscription, and each keeps a
persistent session so that nothing is lost while it restarts. Mosquitto 2.0 goes on assigning
messages to a shared subscriber's session while the subscriber is offline, and does not hand
its unacknowledged messages to another member (measured). So a gateway that dies would sit on
its share until it comes back.

The survivors therefore adopt it: every gateway holds a PostgreSQL advisory lock named after
itself for as long as it lives, and writes a heartbeat. A gateway that sees a peer of its group
with a stale heartbeat and can take that peer's lock (the lock is free only when the peer's
database session is gone) connects with the peer's client id and its persistent session,
draining the peer's queued and unacknowledged messages and taking its share of new ones into
its own batches. When the peer returns and connects, the broker hands the session back to it
(session takeover); the adopted connection does not reconnect, and the lock is released.

Peers do not live for ever (a mistyped `--name` ran once and never returns):
- an adopted peer for which the broker has no session (it never connected, or its session
  expired) has nothing to serve: the session the adoption created is deleted at once and the
  peer forgotten;
- a peer silent longer than `peer_expiry` (GEOWARN_GATEWAY_PEER_EXPIRY_S, 7 days like the
  broker's session expiry), or forgotten by an operator (`geowarn ingest --forget-peer NAME`),
  is retired by the gateway serving it: it unsubscribes the peer's session (no new share goes
  to it), drains what the session still holds, then has the broker delete the session, and
  forgets the peer. A silent peer that nobody serves is simply forgotten.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from ingest.mqtt_client import GatewayConnection

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x47570000  # "GW": advisory locks (namespace, key) of gateway instances


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Peer:
    name: str
    group: str | None
    seen_at: datetime
    alive: bool  # its instance lock is held: the gateway itself or an adopter serves it


def list_peers(conn: psycopg.Connection) -> list[Peer]:
    """Every gateway that has announced itself, and whether someone holds its lock."""
    rows = conn.execute("SELECT gateway, group_name, seen_at FROM gateway_heartbeats "
                        "ORDER BY gateway").fetchall()
    held = {int(r[0]) for r in conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 2 AND classid::bigint = %s AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        (_LOCK_NAMESPACE,))}
    return [Peer(name, group, seen, lock_key(name) in held) for name, group, seen in rows]


def forget_peer(conn: psycopg.Connection, name: str) -> bool:
    """Forget gateway `name`: nobody adopts it again (a gateway serving it retires its
    session). False when no such gateway had announced itself."""
    return conn.execute("DELETE FROM gateway_heartbeats WHERE gateway = %s",
                        (name,)).rowcount > 0


class PeerTakeover:
    def __init__(self, name: str, group: str, connect: Callable[[], psycopg.Connection],
                 make_connection: Callable[[str], GatewayConnection], *,
                 takeover_after: timedelta, peer_expiry: timedelta = timedelta(days=7),
                 max_adopted: int = 3) -> None:
        self.name, self.group = name, group
        self._connect = connect
        self._make_connection = make_connection
        self.takeover_after = takeover_after
        self.peer_expiry = peer_expiry
        self.max_adopted = max_adopted
        self.retiring: set[str] = set()  # adopted peers unsubscribed, draining
        self._conn: psycopg.Connection | None = None
        self.holds_own_lock = False
        self.adopted: dict[str, GatewayConnection] = {}

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            self.holds_own_lock = False  # a new session holds no locks
        return self._conn

    def _try_lock(self, name: str) -> bool:
        row = self._db().execute("SELECT pg_try_advisory_lock(%s, %s)",
                                 (_LOCK_NAMESPACE, lock_key(name))).fetchone()
        return bool(row and row[0])

    def _unlock(self, name: str) -> None:
        self._db().execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NAMESPACE, lock_key(name)))

    def heartbeat(self) -> None:
        """Record that this gateway is alive; called often, also before connecting at start."""
        self._db().execute(
            "INSERT INTO gateway_heartbeats (gateway, group_name, seen_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (gateway) DO UPDATE SET group_name = EXCLUDED.group_name, "
            "seen_at = now()", (self.name, self.group))

    def step(self) -> None:
        """Hold our own lock, drop adopted connections that ended, adopt dead peers."""
        try:
            self.heartbeat()
            if not self.holds_own_lock:
                # Held by an adopter until our connection takes our session back from it.
                self.holds_own_lock = self._try_lock(self.name)
            for peer, connection in list(self.adopted.items()):
                if connection.finished.is_set():
                    if connection.no_session:
                        forget_peer(self._db(), peer)
                        log.warning("forgot peer gateway %s: the broker had no session for "
                                    "it (it never connected, or its session expired)", peer)
                    elif peer not in self.retiring:
                        log.info("peer %s is back (or its broker session ended); handing "
                                 "back", peer)
                    self._release(peer)
            self._retire_expired()
            if len(self.adopted) < self.max_adopted:
                self._adopt_dead_peers()
        except psycopg.Error as exc:
            log.warning("gateway takeover check postponed: %s", exc)
            self._drop()

    def _release(self, peer: str) -> None:
        del self.adopted[peer]
        self.retiring.discard(peer)
        self._unlock(peer)

    def _retire_expired(self) -> None:
        """Adopted peers forgotten or silent past their expiry: unsubscribe, drain, delete."""
        if not self.adopted:
            return
        live = {r[0] for r in self._db().execute(
            "SELECT gateway FROM gateway_heartbeats WHERE gateway = ANY(%s) "
            "AND seen_at >= now() - %s", (list(self.adopted), self.peer_expiry))}
        quiet_s = self.takeover_after.total_seconds()
        for peer, connection in list(self.adopted.items()):
            if peer in live:
                continue
            if peer not in self.retiring:
                log.warning("peer gateway %s expired or was forgotten; retiring its session "
                            "(draining what it holds first)", peer)
                connection.retire()
                self.retiring.add(peer)
            elif connection.unacked == 0 \
                    and time.monotonic() - connection.last_message_at > quiet_s:
                connection.close_session()
                forget_peer(self._db(), peer)
                log.warning("peer gateway %s retired: its broker session is deleted", peer)
                self._release(peer)

    def _adopt_dead_peers(self) -> None:
        db = self._db()
        for (peer,) in db.execute(
                "SELECT gateway FROM gateway_heartbeats WHERE group_name = %s "
                "AND gateway <> %s AND seen_at < now() - %s ORDER BY gateway",
                (self.group, self.name, self.peer_expiry)).fetchall():
            if peer not in self.adopted and self._try_lock(peer):
                # Nobody serves it and it has been silent past its expiry: forget it.
                forget_peer(db, peer)
                self._unlock(peer)
                log.warning("forgot peer gateway %s: silent longer than %s", peer,
                            self.peer_expiry)
        stale = [r[0] for r in db.execute(
            "SELECT gateway FROM gateway_heartbeats WHERE group_name = %s AND gateway <> %s "
            "AND seen_at < now() - %s ORDER BY gateway",
            (self.group, self.name, self.takeover_after))]
        for peer in stale:
            if peer in self.adopted or len(self.adopted) >= self.max_adopted:
                continue
            if not self._try_lock(peer):
                continue  # alive (its session holds the lock) or adopted by another gateway
            log.warning("peer gateway %s is gone; serving its session until it returns", peer)
            connection = self._make_connection(peer)
            connection.start()
            self.adopted[peer] = connection

    def ack(self, tokens: Sequence[object]) -> None:
        for connection in self.adopted.values():
            connection.ack(tokens)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self.holds_own_lock = False

    def close(self) -> None:
        for connection in self.adopted.values():
            connection.stop()
        self.adopted.clear()
        self._drop()
