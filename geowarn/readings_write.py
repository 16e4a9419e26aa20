"""Writing readings: the ingest hot path, plus channel lookup by name and pruning.

`write_readings` streams a batch with binary COPY into a session-local staging table, then
moves it with one INSERT ... SELECT ... ON CONFLICT (channel_id, ts) DO NOTHING. That one
statement drops rows already stored and repeats inside the batch alike (a later row with the
key of an earlier row of the same statement conflicts with it), so a redelivered MQTT message
or a logger that resends its backlog never stores a reading twice, and the counts come from
the statement itself: inserted = rowcount, duplicates = batch size - inserted. When two rows
share a key the one stored first wins; a later value for the same instant is a duplicate.

Validation is done here, before anything reaches the server, so a bad row rejects the whole
batch with a message naming the row; unknown channel ids are reported by id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import pq

from geowarn.db import has_timescaledb
from geowarn.errors import InvalidInput, NotFound

# (channel_id, ts, value, quality)
Row = tuple[int, datetime, float, int]

_STAGE = "_geowarn_readings_stage"
# ON COMMIT DELETE ROWS empties the stage for free at every commit of the session.
_CREATE_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
                 "(channel_id int4, ts timestamptz, value float8, quality int2) "
                 "ON COMMIT DELETE ROWS")
_COPY = f"COPY {_STAGE} (channel_id, ts, value, quality) FROM STDIN (FORMAT BINARY)"
_MOVE = (f"INSERT INTO readings (channel_id, ts, value, quality) "
         f"SELECT channel_id, ts, value, quality FROM {_STAGE} "
         "ON CONFLICT (channel_id, ts) DO NOTHING")
_COPY_TYPES = ("int4", "timestamptz", "float8", "int2")
_INT4_MAX = 2**31 - 1


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int


def _check_row(i: int, row: Row) -> None:
    try:
        channel_id, ts, value, quality = row
    except (TypeError, ValueError):
        raise InvalidInput(f"row {i}: expected (channel_id, ts, value, quality), "
                           f"got {row!r}") from None
    if not isinstance(channel_id, int) or not 0 < channel_id <= _INT4_MAX:
        raise InvalidInput(f"row {i}: channel_id must be a positive int4, got {channel_id!r}")
    if not isinstance(ts, datetime):
        raise InvalidInput(f"row {i}: ts must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        # A naive time is ambiguous (UTC or Beijing time?) and would be read as the server's.
        raise InvalidInput(f"row {i}: ts {ts.isoformat()} has no time zone")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"row {i}: value must be a finite number, got {value!r}")
    if not isinstance(quality, int) or not 0 <= quality <= 32767:
        raise InvalidInput(f"row {i}: quality must be an int in 0..32767, got {quality!r}")


def write_readings(conn: psycopg.Connection, rows: Sequence[Row]) -> WriteResult:
    """Store a batch of readings once each; commits unless the caller holds a transaction."""
    if not rows:
        return WriteResult(0, 0)
    for i, row in enumerate(rows):
        _check_row(i, row)
    outer = conn.info.transaction_status != pq.TransactionStatus.IDLE
    try:
        with conn.transaction():
            conn.execute(_CREATE_STAGE)
            with conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_MOVE)
                inserted = cur.rowcount
                if outer:
                    # Inside the caller's transaction no commit empties the stage yet.
                    cur.execute(f"DELETE FROM {_STAGE}")
    except psycopg.errors.ForeignKeyViolation:
        ids = sorted({r[0] for r in rows})
        known = {r[0] for r in conn.execute(
            "SELECT channel_id FROM channels WHERE channel_id = ANY(%s)", (ids,))}
        unknown = [c for c in ids if c not in known]
        raise NotFound(f"no such channel id(s): {unknown[:20]}"
                       + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")) from None
    return WriteResult(inserted=inserted, duplicates=len(rows) - inserted)


def resolve(conn: psycopg.Connection, device_id: str, channel_key: str) -> int:
    """channel_id of a device's channel: ("LF-0001", "opening"), ("P1", "L1_LF_1.opening")."""
    row = conn.execute("SELECT channel_id FROM channels WHERE device_id = %s AND channel = %s",
                       (device_id, channel_key)).fetchone()
    if row is None:
        known = device_channels(conn, device_id)
        raise NotFound(f"device {device_id!r} has no channel {channel_key!r} "
                       f"(channels: {', '.join(sorted(known)) or 'none'})")
    return int(row[0])


def device_channels(conn: psycopg.Connection, device_id: str) -> dict[str, int]:
    """{channel key: channel_id} of a device; NotFound when the device does not exist."""
    rows = conn.execute(
        "SELECT c.channel, c.channel_id FROM devices d "
        "LEFT JOIN channels c ON c.device_id = d.device_id WHERE d.device_id = %s",
        (device_id,)).fetchall()
    if not rows:
        raise NotFound(f"no such device: {device_id!r}")
    return {key: cid for key, cid in rows if key is not None}


@dataclass(frozen=True)
class Pruned:
    count: int
    unit: str  # "readings" (plain PostgreSQL) or "chunks" (TimescaleDB)


def prune(conn: psycopg.Connection, older_than: timedelta) -> Pruned:
    """Delete raw readings with ts before now() - older_than.

    Plain PostgreSQL deletes rows; TimescaleDB drops whole chunks, as its own retention policy
    does, and keeps the rollups."""
    if older_than <= timedelta(0):
        raise InvalidInput(f"older_than must be positive, got {older_than}")
    with conn.transaction():
        if has_timescaledb(conn):
            dropped = conn.execute("SELECT drop_chunks('readings', older_than => %s::interval)",
                                   (older_than,)).fetchall()
            return Pruned(len(dropped), "chunks")
        cur = conn.execute("DELETE FROM readings WHERE ts < now() - %s::interval",
                           (older_than,))
        return Pruned(cur.rowcount, "readings")
