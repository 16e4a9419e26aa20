"""Ingest hot-path benchmark: write_readings (COPY into staging + INSERT ... ON CONFLICT DO
NOTHING) against the floor of a plain binary COPY straight into the same empty readings table.

    .venv/bin/python -m bench.store [--admin-url URL] [--rows 200000] [--batch 2000]

Each variant gets a fresh migrated database on the server at --admin-url (default: the local
PostgreSQL the tests use), so both start from an empty table with the same indexes. Reported:
rows/s of each, their ratio, and write_readings when every row of the run is a redelivery.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from geowarn import migrate
from geowarn.readings import Row, write_readings

LOCAL_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def make_channels(conn: psycopg.Connection, n: int) -> list[int]:
    conn.execute("INSERT INTO devices (device_id, kind) VALUES ('BENCH', 'rain_gauge')")
    rows = conn.execute(
        "INSERT INTO channels (device_id, channel, kind, spec, unit) "
        "SELECT 'BENCH', 'c' || i, 'rain_gauge', 'rain', 'mm' FROM generate_series(1, %s) i "
        "RETURNING channel_id", (n,)).fetchall()
    return [r[0] for r in rows]


def make_rows(ids: Sequence[int], n: int) -> list[Row]:
    """Readings as ingest produces them: every channel reports once a minute, in time order."""
    t0 = datetime(2026, 7, 1, tzinfo=UTC)
    minute = timedelta(minutes=1)
    return [(ids[i % len(ids)], t0 + (i // len(ids)) * minute, float(i % 97) / 10, 0)
            for i in range(n)]


def plain_copy(conn: psycopg.Connection, batch: Sequence[Row]) -> None:
    with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY readings (channel_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(("int4", "timestamptz", "float8", "int2"))
        for row in batch:
            cp.write_row(row)


def timed(url: str, rows: Sequence[Row], batch: int,
          write: Callable[[psycopg.Connection, Sequence[Row]], object]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for i in range(0, len(rows), batch):
            write(conn, rows[i:i + batch])
        return len(rows) / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--admin-url", default=os.environ.get("GEOWARN_TEST_DATABASE_URL",
                                                         LOCAL_ADMIN))
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=2_000)
    p.add_argument("--channels", type=int, default=500)
    args = p.parse_args()
    results = {}
    with fresh_database(args.admin_url, f"geowarn_bench_{os.getpid()}") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            ids = make_channels(conn, args.channels)
        rows = make_rows(ids, args.rows)
        results["plain COPY (floor)"] = timed(url, rows, args.batch, plain_copy)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE readings")
            conn.execute("VACUUM ANALYZE readings")
        results["write_readings, all new"] = timed(url, rows, args.batch, write_readings)
        results["write_readings, all duplicates"] = timed(url, rows, args.batch, write_readings)
    print(f"{args.rows} rows, batches of {args.batch}, {args.channels} channels")
    for name, rate in results.items():
        print(f"  {name:32s} {rate:10,.0f} rows/s")
    ratio = results["write_readings, all new"] / results["plain COPY (floor)"]
    print(f"  dedup path / plain COPY: {ratio:.2f}")


if __name__ == "__main__":
    main()
