"""Database connections: one pool per process, plus short-lived connections for tools.

psycopg errors that mean "the server is not there" are translated into DatabaseUnavailable
here, so callers retry on one exception type.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from geowarn.errors import DatabaseUnavailable
from geowarn.settings import get_settings

_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def database_url() -> str:
    """The configured database URL, starting the embedded PostgreSQL when none is set (and
    saying so on stderr, once: an operator who forgot GEOWARN_DATABASE_URL must not believe
    they are looking at their own database)."""
    url = get_settings().database_url
    if url:
        return url
    from geowarn.embedded import embedded_database_notice, embedded_database_url

    url = embedded_database_url()
    embedded_database_notice()
    return url


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(url or database_url(), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}".strip()) from exc


def get_pool() -> ConnectionPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            settings = get_settings()
            _pool = ConnectionPool(
                database_url(),
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                open=True,
                name="geowarn",
                # A connection the server dropped (restart, proxy cut) is replaced on checkout.
                check=ConnectionPool.check_connection,
            )
        return _pool


def close_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


@contextmanager
def transaction() -> Iterator[psycopg.Connection]:
    """A pooled connection inside one transaction: committed on success, rolled back on error."""
    try:
        with get_pool().connection() as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc)) from exc


def has_timescaledb(conn: psycopg.Connection) -> bool:
    """True when the timescaledb extension is installed in this database."""
    row = conn.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return row is not None


def timescaledb_available(conn: psycopg.Connection) -> bool:
    """True when the server could load timescaledb (it is listed as available)."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None
