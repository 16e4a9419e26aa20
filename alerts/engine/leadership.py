"""Which `geowarn engine --partitions N` process leads which partition.

Every process ("member" of the engine group named by --name) is a candidate for every
partition. It keeps one control session to PostgreSQL, on which it holds:
- its member lock (advisory lock (MEMBER namespace, name)): held while the process lives;
- the lock of each partition it leads (PARTITION namespace, "base/N/k"): at most one leader
  per partition, whatever happens, because PostgreSQL grants each lock to one session;
- a shared hold on the classic engine's lock, so an unpartitioned `geowarn engine` and a
  partitioned group never judge the same channels.
and every `heartbeat_s` it writes heartbeats (engine_members, engine_partitions, migration
0060) and rebalances:
- the owner of partition k is the k-th live member in name order (round robin,
  alerts/engine/partitions.py `owner`); a member leads the partitions it owns and hands back
  (stops its leader, then unlocks) those it does not once their owner is alive;
- a partition nobody holds is taken by its owner at its next heartbeat; by anyone once it has
  been orphaned longer than `takeover_after_s` (an owner that cannot lead it);
- a partition whose lock is held by a member whose heartbeat is older than
  `takeover_after_s` (frozen, or cut off from us but not from the database) is fenced: every
  session of that member (named by application_name) is terminated, which frees its locks and
  aborts any step it had in flight, and the partition is taken.

Takeover after kill -9 of a leader: PostgreSQL ends the dead process's sessions when their
sockets close, so its locks are free at once; the next heartbeat of a survivor (at most
`heartbeat_s` later) takes the partitions it now owns and leads them as a restart does (state
restored from the store, rings refilled, one catch-up step over what arrived meanwhile).
A frozen leader: `takeover_after_s` + `heartbeat_s`. The partition's leader runs the
unchanged alerts.engine.service.Service loop (LISTEN, periodic tick) on its own thread; its
periodic `SELECT 1` on the control session ends its leadership when that session is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from alerts.engine import service as engine_service
from alerts.engine.partitions import Partition, owner
from alerts.engine.service import EngineConfig, Service
from geowarn.errors import ConfigurationError, InvalidInput

log = logging.getLogger(__name__)

MEMBER_NS = 0x454D0000  # "EM": (namespace, key) advisory locks of live engine members
PARTITION_NS = 0x45500000  # "EP": one per partition, held by its leader's control session


def _key(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def application_name(base: str, member: str) -> str:
    """The application_name every session of a member carries (so it can be fenced)."""
    return f"geowarn-engine {base}/{member}"[:63]


@dataclass
class _Leader:
    partition: int
    service: Service
    stop: threading.Event
    thread: threading.Thread
    error: BaseException | None = None


class PartitionedService:
    """A member of a partitioned engine group: leads the partitions it owns, stands by for
    the others. Observable: `leading` (partition indices led now), `took` (monotonic time
    each partition was last taken)."""

    def __init__(self, db_url: str, config: EngineConfig, partitions: int,  # noqa: B008
                 member: str | None = None, heartbeat_s: float = 1.0,
                 takeover_after_s: float = 15.0) -> None:
        Partition(0, partitions)  # validates the count
        if not (heartbeat_s > 0 and takeover_after_s > heartbeat_s):
            raise InvalidInput("engine heartbeat must be positive and the takeover delay "
                               "longer than the heartbeat")
        self.base, self.count = config.name, partitions
        self.member = member or f"{socket.gethostname()}-{os.getpid()}"
        if not self.member or len(self.member) > 40:
            raise InvalidInput(f"engine member name must be 1-40 characters: {self.member!r}")
        self.app = application_name(self.base, self.member)
        self.db_url = make_conninfo(db_url, application_name=self.app)
        self.config = config
        self.heartbeat_s, self.takeover_after_s = heartbeat_s, takeover_after_s
        self.leaders: dict[int, _Leader] = {}
        self.handing_back: dict[int, _Leader] = {}
        self.orphaned_since: dict[int, float] = {}
        self.took: dict[int, float] = {}
        self.started = threading.Event()  # member lock and first heartbeat in place

    @property
    def leading(self) -> set[int]:
        return set(self.leaders)

    def partition_lock(self, k: int) -> int:
        return _key(f"{self.base}/{self.count}/{k}")

    # --- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        conn = psycopg.connect(self.db_url, autocommit=True)
        try:
            self._join(conn, stop)
            self.started.set()
            while not stop.is_set():
                self._beat(conn)
                stop.wait(self.heartbeat_s)
        finally:
            for leader in [*self.leaders.values(), *self.handing_back.values()]:
                leader.stop.set()
            for leader in [*self.leaders.values(), *self.handing_back.values()]:
                leader.thread.join()
            self.leaders.clear()
            self.handing_back.clear()
            # A clean stop: the others need not wait for our heartbeat to go stale (if the
            # session is gone, so are our locks).
            with contextlib.suppress(psycopg.Error):
                conn.execute("DELETE FROM engine_members WHERE engine = %s AND member = %s",
                             (self.base, self.member))
            conn.close()  # frees every lock of this member at once

    def _join(self, conn: psycopg.Connection, stop: threading.Event) -> None:
        while not stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)",
                               (engine_service._LEADER_KEY,)).fetchone()
            if row and row[0]:
                break
            log.info("engine %s member %s: an unpartitioned engine leads; standing by",
                     self.base, self.member)
            stop.wait(self.heartbeat_s * 2)
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                           (MEMBER_NS, _key(f"{self.base}/{self.member}"))).fetchone()
        if not (got and got[0]):
            raise ConfigurationError(f"engine member {self.member!r} of {self.base!r} is "
                                     "already running (give each process its own --member)")
        clash = [(m, n) for m, n in self._alive(conn).items() if n != self.count]
        if clash:
            raise ConfigurationError(
                f"engine {self.base!r}: member {clash[0][0]} runs with --partitions "
                f"{clash[0][1]}, this one with {self.count}; a group needs one partition count "
                "(stop the group and start it again with the new count)")
        self._heartbeat_member(conn)
        log.info("engine %s member %s joined: %d partitions", self.base, self.member, self.count)

    def _heartbeat_member(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO engine_members (engine, member, partitions, seen_at) "
            "VALUES (%s, %s, %s, now()) ON CONFLICT (engine, member) DO UPDATE SET "
            "partitions = excluded.partitions, seen_at = now()",
            (self.base, self.member, self.count))

    def _held(self, conn: psycopg.Connection, namespace: int) -> dict[int, int]:
        """Advisory locks of a namespace granted in this database: key -> holder's pid."""
        return {int(k): int(p) for k, p in conn.execute(
            "SELECT objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 2 AND classid::bigint = %s AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())", (namespace,))}

    def _alive(self, conn: psycopg.Connection) -> dict[str, int]:
        """Other members whose process holds its member lock and whose heartbeat is fresh,
        with their partition counts."""
        held = self._held(conn, MEMBER_NS)
        rows = conn.execute(
            "SELECT member, partitions FROM engine_members WHERE engine = %s AND member <> %s "
            "AND seen_at > now() - %s * interval '1 second'",
            (self.base, self.member, self.takeover_after_s)).fetchall()
        return {m: n for m, n in rows if _key(f"{self.base}/{m}") in held}

    def _live(self, conn: psycopg.Connection) -> set[str]:
        """The members sharing the partitions: the live ones of our count, and us."""
        return {m for m, n in self._alive(conn).items() if n == self.count} | {self.member}

    def _beat(self, conn: psycopg.Connection) -> None:
        self._heartbeat_member(conn)
        self._reap(conn)
        live = self._live(conn)
        held = self._held(conn, PARTITION_NS)
        now = time.monotonic()
        for k in range(self.count):
            mine = owner(k, sorted(live)) == self.member
            if k in self.leaders:
                if not mine:
                    self._hand_back(k)
                continue
            if k in self.handing_back:
                continue
            if self.partition_lock(k) in held:
                self.orphaned_since.pop(k, None)
                self._fence_if_stale(conn, k, held[self.partition_lock(k)])
                continue
            since = self.orphaned_since.setdefault(k, now)
            if mine or now - since > self.takeover_after_s:
                self._take(conn, k)
        if self.leaders:
            conn.execute(
                "INSERT INTO engine_partitions (engine, partitions, partition, leader) "
                "SELECT %s, %s, k, %s FROM unnest(%s::int[]) AS k "
                "ON CONFLICT (engine, partitions, partition) DO UPDATE SET "
                "since = CASE WHEN engine_partitions.leader = excluded.leader "
                "THEN engine_partitions.since ELSE now() END, leader = excluded.leader, "
                "seen_at = now()", (self.base, self.count, self.member, sorted(self.leaders)))

    def _reap(self, conn: psycopg.Connection) -> None:
        """A leader that died ends the member (the process exits non-zero, its locks free,
        and another member leads the partition, as a crashed unpartitioned engine restarts);
        one that was handed back releases its partition's lock."""
        for k, leader in list(self.leaders.items()):
            if not leader.thread.is_alive():
                raise RuntimeError(f"engine partition {k} stopped: {leader.error!r}") \
                    from leader.error
        for k, leader in list(self.handing_back.items()):
            if not leader.thread.is_alive():
                del self.handing_back[k]
                self._unlock(conn, k)
                log.info("engine %s member %s handed partition %d back", self.base,
                         self.member, k)

    def _take(self, conn: psycopg.Connection, k: int) -> None:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                           (PARTITION_NS, self.partition_lock(k))).fetchone()
        if not (got and got[0]):
            return  # someone else took it since we looked
        self.orphaned_since.pop(k, None)
        part = Partition(k, self.count)
        config = dataclasses.replace(self.config, name=part.engine_name(self.base),
                                     partition=part)
        service, stop = Service(self.db_url, config), threading.Event()
        thread = threading.Thread(target=self._lead, args=(k, service, stop, conn),
                                  name=f"engine-p{k}", daemon=True)
        leader = _Leader(k, service, stop, thread)
        self.leaders[k] = leader
        self.took[k] = time.monotonic()
        log.info("engine %s member %s leads partition %d of %d (%s)", self.base, self.member,
                 k, self.count, config.name)
        leader.thread.start()

    def _lead(self, k: int, service: Service, stop: threading.Event,
              conn: psycopg.Connection) -> None:
        try:
            service.lead(stop, conn)
        except BaseException as exc:  # reported by the heartbeat loop, which ends the member
            log.exception("engine partition %d failed", k)
            leader = self.leaders.get(k) or self.handing_back.get(k)
            if leader is not None:
                leader.error = exc

    def _hand_back(self, k: int) -> None:
        leader = self.leaders.pop(k)
        leader.stop.set()  # the step in hand finishes; _reap unlocks once it has
        self.handing_back[k] = leader
        log.info("engine %s member %s hands partition %d to its owner", self.base,
                 self.member, k)

    def _unlock(self, conn: psycopg.Connection, k: int) -> None:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (PARTITION_NS, self.partition_lock(k)))

    def _fence_if_stale(self, conn: psycopg.Connection, k: int, pid: int) -> None:
        """The partition's lock is held: by a live member (nothing to do) or by a session of
        a member whose heartbeat stopped (frozen or cut off): end all of that member's
        sessions so that the partition can be taken."""
        row = conn.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
        if row is None or row[0] == self.app or not str(row[0]).startswith(
                application_name(self.base, "")):
            return
        holder = str(row[0])[len(application_name(self.base, "")):]
        fresh = conn.execute(
            "SELECT 1 FROM engine_members WHERE engine = %s AND member = %s "
            "AND seen_at > now() - %s * interval '1 second'",
            (self.base, holder, self.takeover_after_s)).fetchone()
        if fresh:
            return
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = %s", (row[0],)).fetchone()
        log.warning("engine %s member %s: partition %d's leader %s has not beaten for over "
                    "%g s; ended its %d session(s)", self.base, self.member, k, holder,
                    self.takeover_after_s, ended[0] if ended else 0)
