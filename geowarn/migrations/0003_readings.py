"""Migration 0003: the readings table, as a TimescaleDB hypertable or a plain table.

Both paths give the same `readings` table and the same answers through geowarn/readings.py.

TimescaleDB path (2.13 or newer: `by_range` arrived in 2.13):
- hypertable on ts, chunk interval `settings.chunk_interval`;
- compression segmented by channel_id, ordered by ts, policy after `settings.compress_after`
  (the 2.x compression API; 2.18+ keeps it as an alias of the columnstore API);
- continuous aggregates readings_hourly / readings_daily (n, min, max, avg, sum per channel and
  bucket), real-time (`materialized_only = false`) so unmaterialised buckets are computed from
  raw rows at query time; refresh policies reach back `max_backlog_days` + 1 day, because that
  is the oldest reading ingest accepts and so the oldest bucket a late reading can change;
- a retention policy on raw readings when `settings.retention` is set (rollups are kept).

The aggregates are created WITH NO DATA: only `WITH DATA` must run outside a transaction
block, and the table is empty here anyway, so this migration needs no change to the runner.

The foreign key to channels is kept on the hypertable: TimescaleDB supports foreign keys from a
hypertable to a plain table (only hypertable-to-hypertable is unsupported). Caveat: 2.14.x did
not enforce it for rows inserted straight into compressed chunks (timescaledb issue #6759).

Plain path: the same table; a BRIN index on ts for range scans across all channels and a btree
on ingested_at for "what arrived since". Rollups are answered by date_bin over raw rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import psycopg

from geowarn.errors import MigrationError

if TYPE_CHECKING:
    from geowarn.migrate import MigrationContext

_TABLE = """
CREATE TABLE readings (
    channel_id  integer NOT NULL REFERENCES channels (channel_id),
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    -- devices.messages.Quality: 0 reliable, 1 doubtful, 2 unreliable.
    quality     smallint NOT NULL DEFAULT 0,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    -- A reading can never be stored twice; also the index every per-channel query uses.
    PRIMARY KEY (channel_id, ts)
)
"""

# name, time_bucket width, refresh end_offset, refresh schedule
_ROLLUPS = (
    ("readings_hourly", "1 hour", "1 hour", "30 minutes"),
    ("readings_daily", "1 day", "1 day", "1 hour"),
)


def _rollup_sql(name: str, width: str) -> str:
    # materialized_only is spelled out: its default flipped to true in TimescaleDB 2.13.
    return f"""
CREATE MATERIALIZED VIEW {name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT channel_id,
       time_bucket(INTERVAL '{width}', ts) AS bucket,
       count(*)   AS n,
       min(value) AS min,
       max(value) AS max,
       avg(value) AS avg,
       sum(value) AS sum
FROM readings
GROUP BY channel_id, time_bucket(INTERVAL '{width}', ts)
WITH NO DATA
"""


def _interval(conn: psycopg.Connection, text: str, setting: str) -> timedelta:
    """Parse a setting as a PostgreSQL interval, with an error that names the setting."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT %s::interval", (text,)).fetchone()
    except psycopg.errors.DataError as exc:
        raise MigrationError(f"{setting}={text!r} is not a PostgreSQL interval "
                             f"(e.g. '1 day'): {exc}") from exc
    assert row is not None
    value: timedelta = row[0]
    if value <= timedelta(0):
        raise MigrationError(f"{setting}={text!r} must be a positive interval")
    return value


def upgrade(conn: psycopg.Connection, ctx: MigrationContext) -> None:
    conn.execute(_TABLE)
    if not ctx.timescale:
        conn.execute("CREATE INDEX readings_ts_brin ON readings USING brin (ts)")
        conn.execute("CREATE INDEX readings_ingested_at_idx ON readings (ingested_at)")
        return

    settings = ctx.settings
    chunk = _interval(conn, settings.chunk_interval, "GEOWARN_CHUNK_INTERVAL")
    compress_after = _interval(conn, settings.compress_after, "GEOWARN_COMPRESS_AFTER")
    reach_back = timedelta(days=settings.max_backlog_days) + timedelta(days=1)
    retention = None
    if settings.retention:
        retention = _interval(conn, settings.retention, "GEOWARN_RETENTION")
        if retention <= reach_back:
            raise MigrationError(
                f"GEOWARN_RETENTION={settings.retention!r} must be longer than "
                f"GEOWARN_MAX_BACKLOG_DAYS + 1 day ({reach_back.days} days): the rollups are "
                "refreshed that far back, and a refresh over dropped raw data would empty them")

    conn.execute("SELECT create_hypertable('readings', by_range('ts', %s::interval))", (chunk,))
    conn.execute("CREATE INDEX readings_ingested_at_idx ON readings (ingested_at)")
    conn.execute("""ALTER TABLE readings SET (
                        timescaledb.compress,
                        timescaledb.compress_segmentby = 'channel_id',
                        timescaledb.compress_orderby = 'ts')""")
    conn.execute("SELECT add_compression_policy('readings', compress_after => %s::interval)",
                 (compress_after,))
    for name, width, end_offset, schedule in _ROLLUPS:
        conn.execute(_rollup_sql(name, width))
        conn.execute(
            "SELECT add_continuous_aggregate_policy(%s::regclass,"
            " start_offset => %s::interval, end_offset => %s::interval,"
            " schedule_interval => %s::interval)",
            (name, reach_back, end_offset, schedule))
    if retention is not None:
        conn.execute("SELECT add_retention_policy('readings', drop_after => %s::interval)",
                     (retention,))
