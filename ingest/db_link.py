"""The gateway writer's database connection, and retrying while the database is away.

The writer thread owns one connection, opened on first use and dropped (to be reopened) after
any failure, since it may be broken or mid-transaction. `retry` runs an action until the
database answers, backing off with jitter, and gives up only when the gateway stops
(GatewayStopping): nothing is acknowledged meanwhile, so the broker keeps the messages.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from ingest.stats import IngestStats

log = logging.getLogger("ingest.gateway")  # the gateway's log, as before the split
T = TypeVar("T")


class GatewayStopping(Exception):
    """Raised inside the writer when asked to stop while waiting for the database."""


class DatabaseLink:
    def __init__(self, db_url: str, stop: threading.Event, stats: IngestStats) -> None:
        self.db_url = db_url
        self._stop = stop
        self._stats = stats
        self._conn: psycopg.Connection | None = None

    def connect(self) -> psycopg.Connection:
        """A new connection (the device cache and takeover open their own with it)."""
        # Autocommit: every unit of work opens its own `conn.transaction()`, so nothing is
        # left in an implicit transaction that would turn the next block into a savepoint.
        return psycopg.connect(self.db_url, connect_timeout=5, autocommit=True)

    def db(self) -> psycopg.Connection:
        """The writer's connection, reopened if it was dropped or broke."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self.connect()
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def retry(self, action: Callable[[], T], what: str, *, drop: bool = True) -> T:
        """Run `action` until it succeeds, backing off with jitter while the database is
        unreachable. Other database errors are raised to the caller."""
        attempt = 0
        while True:
            try:
                return action()
            except psycopg.OperationalError as exc:
                if drop:  # only the committer's own connection; the decoder has none
                    self.drop()
                attempt += 1
                delay = random.uniform(0.05, min(5.0, 0.1 * 2 ** min(attempt, 10)))
                self._stats.add("database_retries")
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("%s: database unavailable (%s); retry %d in %.2fs",
                            what, first_line, attempt, delay)
                if self._stop.wait(delay):
                    raise GatewayStopping(what) from exc
            except Exception:
                if drop:  # the connection may be mid-transaction or broken
                    self.drop()
                raise
