"""The engine's LISTEN connection, read on its own thread.

Every ingest commit sends a `geowarn_readings` notification. Read only between engine steps,
they pile up while a step runs: the server's backend then waits to write them to the engine's
socket, and a backend stuck in that write absorbs no ProcSignalBarrier, so every DROP DATABASE
on the server waits for it, and the server's notification queue cannot be trimmed past it (a
full queue makes every NOTIFY, hence every ingest commit, fail). Measured in the 24-hour soak:
the listener's backend sat in ClientWrite for over 90 minutes with the engine busy. Here a
thread reads notifications as they come and folds them into one set of channel ids, which the
engine's loop takes whole: one step covers everything that arrived during the last one.

A lost connection is reopened with backoff; what was notified meanwhile is unknown, so the next
take says "all channels" (None), and the engine searches the whole registry once.
"""

from __future__ import annotations

import logging
import random
import threading

import psycopg

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "geowarn_readings"


def parse_payload(payload: str) -> set[int] | None:
    """Channel ids named by a geowarn_readings notification; None means all ("*")."""
    if payload.strip() in ("", "*"):
        return None
    try:
        return {int(x) for x in payload.split(",") if x.strip()}
    except ValueError:
        log.warning("ignoring malformed %s payload %r", NOTIFY_CHANNEL, payload[:80])
        return None


def merge(a: set[int] | None, b: set[int] | None) -> set[int] | None:
    """Union of two channel sets, None (all channels) absorbing."""
    return None if a is None or b is None else a | b


class Listener:
    """LISTEN geowarn_readings on a connection of its own, read continuously."""

    def __init__(self, db_url: str, *, max_backoff_s: float = 10.0) -> None:
        self.db_url = db_url
        self.max_backoff_s = max_backoff_s
        self.reconnects = 0
        self._ids: set[int] | None = set()
        self._pending = False
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._conn = self._connect()  # the first connection fails loudly, in the caller
        self._thread = threading.Thread(target=self._run, name="engine-listen", daemon=True)
        self._thread.start()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.db_url, autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    def _add(self, ids: set[int] | None) -> None:
        with self._changed:
            self._ids = merge(self._ids, ids)
            self._pending = True
            self._changed.notify_all()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                for note in self._conn.notifies(timeout=0.5):
                    self._add(parse_payload(note.payload))
                attempt = 0
                continue
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("engine's LISTEN connection lost (%s); reopening",
                            type(exc).__name__)
            # Reopen; whatever was notified meanwhile is unknown: judge every channel once.
            while not self._stop.is_set():
                attempt += 1
                self._stop.wait(random.uniform(0.1, min(self.max_backoff_s,
                                                        0.2 * 2 ** min(attempt, 8))))
                try:
                    self._conn.close()
                    self._conn = self._connect()
                except psycopg.Error as exc:
                    log.warning("engine's LISTEN connection not reopened (%s)",
                                type(exc).__name__)
                    continue
                self.reconnects += 1
                self._add(None)
                break

    @property
    def backend_pid(self) -> int:
        """The server process of the current LISTEN connection (monitoring, tests)."""
        return self._conn.info.backend_pid

    def take(self, timeout: float) -> tuple[bool, set[int] | None]:
        """Wait up to `timeout` s for a notification; (whether any came, the channel ids
        named since the last take, None for all)."""
        with self._changed:
            self._changed.wait_for(lambda: self._pending, timeout)
            got, ids = self._pending, self._ids
            self._pending, self._ids = False, set()
        return got, ids

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._conn.close()
