"""The engine's LISTEN connection is read on its own thread (alerts/engine/listener.py), over
the real PostgreSQL: a burst of notifications while the engine is busy does not leave the
server's backend waiting to write to the engine (which held every DROP DATABASE of the server
for over 90 minutes in the soak), and a lost connection is reopened with "judge everything"."""

from __future__ import annotations

import time

import psycopg

from alerts.engine.listener import NOTIFY_CHANNEL, Listener


def _backend_waits(conn: psycopg.Connection, pid: int) -> str | None:
    row = conn.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                       (pid,)).fetchone()
    return row[0] if row else None


def _notify_burst(conn: psycopg.Connection, n: int, first: int) -> None:
    # ~40 bytes a payload, like a gateway batch naming its channels: megabytes in all, far
    # beyond what the socket buffers hold.
    with conn.transaction():
        for i in range(n):
            ids = ",".join(str(first + i * 5 + k) for k in range(5))
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, ids))


def test_a_burst_is_read_while_the_engine_is_busy_and_taken_whole(db_url: str) -> None:
    listener = Listener(db_url)
    try:
        with psycopg.connect(db_url, autocommit=True) as sender:
            for k in range(4):
                _notify_burst(sender, 20_000, k * 100_000)
            # The engine is "busy" (takes nothing) while the burst arrives: the thread keeps
            # reading, so the backend ends up waiting for the client's next request, not
            # stuck writing notifications the client does not read.
            deadline = time.monotonic() + 60
            while (_backend_waits(sender, listener.backend_pid) != "ClientRead"
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            assert _backend_waits(sender, listener.backend_pid) == "ClientRead"
        named: set[int] = set()
        deadline = time.monotonic() + 60
        while len(named) < 4 * 20_000 * 5 and time.monotonic() < deadline:
            got, ids = listener.take(1.0)  # the client may still be parsing the last ones
            assert ids is not None
            named |= ids
        assert len(named) == 4 * 20_000 * 5
        assert listener.take(0.2) == (False, set())  # each taken once
    finally:
        listener.close()


def test_a_lost_connection_is_reopened_and_asks_for_everything(db_url: str) -> None:
    listener = Listener(db_url, max_backoff_s=0.5)
    try:
        with psycopg.connect(db_url, autocommit=True) as admin:
            first = listener.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            got, ids = listener.take(30.0)
            assert got and ids is None  # unknown what was missed: judge every channel
            assert listener.reconnects == 1 and listener.backend_pid != first
            admin.execute("SELECT pg_notify(%s, '7,8')", (NOTIFY_CHANNEL,))
            assert listener.take(30.0) == (True, {7, 8})
    finally:
        listener.close()
