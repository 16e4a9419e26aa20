"""Bulk reads of the readings store for a caller that needs many channels' rows at once (the
warning engine's cold start and catch-up): one binary COPY of a set-based query, parsed
straight into numpy arrays, instead of one Python tuple per row.

- `ranges`: the raw readings of each channel inside its own time range;
- `rollups`: hourly or daily aggregates (n, min, max, avg, sum) of many channels over a range,
  from the continuous aggregates on TimescaleDB, from date_bin over raw rows on plain
  PostgreSQL; the same answers either way (readings_hourly/readings_daily are real-time
  aggregates over UTC-aligned buckets, and the raw query bins the same rows the same way);
- `hourly_middles`: per channel and UTC hour, the two middle values (equal when the count is
  odd) of the hour's newest readings that are reliable and inside per-channel bounds, and
  those readings' mean time: what the engine's hourly displacement medians and their times
  are made of (alerts/engine/disp_history.py), one row per hour instead of every reading.
  The continuous aggregates cannot answer it (they average every reading, bad ones
  included), so both paths run the same date_bin query.

Both run on plain PostgreSQL and TimescaleDB (a hypertable, compressed or not, answers the same
SELECT). Every selected column is fixed-width and NOT NULL, so each COPY tuple has the same
size and one numpy structured view parses a whole buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from geowarn.errors import InvalidInput

_HEADER = b"PGCOPY\n\xff\r\n\x00"
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # bucket alignment of both rollup paths
_ROLLUP_VIEWS = {timedelta(hours=1): "readings_hourly", timedelta(days=1): "readings_daily"}
# Per binary COPY tuple: int16 field count, then per field an int32 length and the value.
_RANGE_ROW = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("channel_id", ">i4"), ("l1", ">i4"),
                       ("t", ">f8"), ("l2", ">i4"), ("value", ">f8"), ("l3", ">i4"),
                       ("quality", ">i2")])
_ROLLUP_ROW = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("channel_id", ">i4"), ("l1", ">i4"),
                        ("t", ">f8"), ("l2", ">i4"), ("n", ">i8"), ("l3", ">i4"),
                        ("min", ">f8"), ("l4", ">i4"), ("max", ">f8"), ("l5", ">i4"),
                        ("avg", ">f8"), ("l6", ">i4"), ("sum", ">f8")])
_MIDDLE_ROW = np.dtype([("nf", ">i2"), ("l0", ">i4"), ("channel_id", ">i4"), ("l1", ">i4"),
                        ("t", ">f8"), ("l2", ">i4"), ("n", ">i8"), ("l3", ">i4"),
                        ("lo", ">f8"), ("l4", ">i4"), ("hi", ">f8"), ("l5", ">i4"),
                        ("sec", ">f8")])


@dataclass(frozen=True)
class RangeRows:
    """Raw readings ordered by channel, then time; t in seconds since the epoch."""

    channel_id: np.ndarray  # int64
    t: np.ndarray  # float64
    value: np.ndarray  # float64
    quality: np.ndarray  # int8


@dataclass(frozen=True)
class RollupRows:
    """One row per channel and bucket holding readings; t = bucket start (seconds)."""

    channel_id: np.ndarray
    t: np.ndarray
    n: np.ndarray
    min: np.ndarray
    max: np.ndarray
    avg: np.ndarray
    sum: np.ndarray


def bound(x: datetime | float) -> str:
    # Text bounds: psycopg has no float -> timestamptz adapter for ±infinity.
    if isinstance(x, datetime):
        if x.tzinfo is None:
            raise InvalidInput(f"bound {x.isoformat()} has no time zone")
        return x.isoformat()
    if math.isinf(x):
        return "infinity" if x > 0 else "-infinity"
    raise InvalidInput(f"a time bound must be a datetime or ±infinity, got {x!r}")


def _copy_rows(conn: psycopg.Connection, query: sql.Composable, params: Sequence[object],
               row: np.dtype) -> np.ndarray:
    """Run COPY (query) TO STDOUT (FORMAT BINARY) and view its tuples as `row` records."""
    chunks: list[bytes] = []
    with conn.cursor() as cur, cur.copy(
            sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query), params) as copy:
        for block in copy:
            chunks.append(bytes(block))
    data = b"".join(chunks)
    if not data.startswith(_HEADER):
        raise InvalidInput("the server's binary COPY has an unexpected header")
    ext = int.from_bytes(data[15:19], "big")
    body = data[19 + ext: -2]  # the trailer is int16 -1
    if len(body) % row.itemsize:
        raise InvalidInput("the server's binary COPY rows are not the expected width")
    rec = np.frombuffer(body, row)
    widths = [(name, row[name].itemsize) for name in row.names[2::2]]  # type: ignore[index]
    lengths = [name for name in row.names[1::2]]  # type: ignore[index]
    if rec.size and (np.any(rec["nf"] != len(widths)) or any(
            np.any(rec[ln] != w) for ln, (_, w) in zip(lengths, widths, strict=True))):
        raise InvalidInput("the server's binary COPY has NULLs or unexpected columns")
    return rec


def ranges(conn: psycopg.Connection, channel_ids: Sequence[int],
           lower: Sequence[datetime | float], upper: Sequence[datetime | float], *,
           inclusive_lower: bool = False) -> RangeRows:
    """Readings of channel_ids[i] with lower[i] < ts <= upper[i] (lower[i] <= ts with
    inclusive_lower), ordered by channel and time; bounds are aware datetimes or ±inf."""
    if not (len(channel_ids) == len(lower) == len(upper)):
        raise InvalidInput("ranges needs one lower and one upper bound per channel id")
    if not channel_ids:
        return RangeRows(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int8))
    op = sql.SQL(">=" if inclusive_lower else ">")
    query = sql.SQL(
        "SELECT r.channel_id, extract(epoch FROM r.ts)::float8, r.value, r.quality "
        "FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[]) AS w(id, lo, hi) "
        "JOIN readings r ON r.channel_id = w.id AND r.ts {} w.lo AND r.ts <= w.hi").format(op)
    rec = _copy_rows(conn, query, ([int(c) for c in channel_ids], [bound(x) for x in lower],
                                   [bound(x) for x in upper]), _RANGE_ROW)
    ch, t = rec["channel_id"].astype(np.int64), rec["t"].astype(np.float64)
    v, q = rec["value"].astype(np.float64), rec["quality"].astype(np.int8)
    # Sorted here, not by the server: its plan (one index range scan per channel) usually
    # gives this order already, and an ORDER BY would make it sort millions of rows on disk.
    if ch.size > 1 and not np.all((ch[1:] > ch[:-1]) | ((ch[1:] == ch[:-1]) & (t[1:] > t[:-1]))):
        order = np.lexsort((t, ch))
        ch, t, v, q = ch[order], t[order], v[order], q[order]
    return RangeRows(ch, t, v, q)


def rollups(conn: psycopg.Connection, channel_ids: Sequence[int], start: datetime,
            end: datetime, bucket: timedelta, *, use_rollups: bool = True) -> RollupRows:
    """Hourly or daily aggregates of readings with start <= ts < end, per channel and UTC
    bucket, ordered by channel and bucket. start and end must lie on bucket edges (whole
    UTC hours or days), so every bucket is complete and both paths agree."""
    view = _ROLLUP_VIEWS.get(bucket)
    if view is None:
        raise InvalidInput(f"bulk rollups are hourly or daily, not {bucket}")
    unit = "hour" if bucket == timedelta(hours=1) else "day"
    for name, t in (("start", start), ("end", end)):
        if t.tzinfo is None or t.utcoffset() is None or (t - _ORIGIN) % bucket:
            raise InvalidInput(f"{name} {t.isoformat()} is not on a UTC {unit} edge")
    if end <= start:
        raise InvalidInput("end must be after start")
    ids = [int(c) for c in channel_ids]
    present = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (view,)).fetchone()
    query: sql.Composable
    if use_rollups and present and present[0]:
        query = sql.SQL(
            "SELECT channel_id, extract(epoch FROM bucket)::float8, n::int8, min, max, avg, "
            "sum FROM {} WHERE channel_id = ANY(%s::int4[]) AND bucket >= %s AND bucket < %s "
            "ORDER BY channel_id, bucket").format(sql.Identifier(view))
    else:
        query = sql.SQL(
            "SELECT channel_id, extract(epoch FROM b)::float8, count(*)::int8, min(value), "
            "max(value), avg(value), sum(value) FROM (SELECT channel_id, value, "
            "date_bin(%s::interval, ts, '2000-01-01T00:00:00+00:00'::timestamptz) AS b "
            "FROM readings WHERE channel_id = ANY(%s::int4[]) AND ts >= %s AND ts < %s) x "
            "GROUP BY channel_id, b ORDER BY channel_id, b")
    params: tuple[object, ...] = ((ids, start, end) if use_rollups and present and present[0]
                                  else (bucket, ids, start, end))
    rec = _copy_rows(conn, query, params, _ROLLUP_ROW)
    return RollupRows(rec["channel_id"].astype(np.int64), rec["t"].astype(np.float64),
                      rec["n"].astype(np.int64), *(rec[k].astype(np.float64)
                                                   for k in ("min", "max", "avg", "sum")))


@dataclass(frozen=True)
class HourMiddles:
    """One row per channel and UTC hour holding kept readings, ordered by channel and hour:
    t = the newest kept reading's time (seconds), n = readings kept, lo/hi = the two middle
    values in sorted order (lo == hi when n is odd), so 0.5 * (lo + hi) is their median;
    sec = the mean time of those readings (seconds since the epoch)."""

    channel_id: np.ndarray
    t: np.ndarray
    n: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    sec: np.ndarray


def hourly_middles(conn: psycopg.Connection, channel_ids: Sequence[int],
                   lower: Sequence[datetime], upper: Sequence[datetime],
                   low: Sequence[float], high: Sequence[float], *, newest: int) -> HourMiddles:
    """For channel_ids[i], readings with lower[i] <= ts < upper[i] (bounds on UTC hour edges,
    so no hour is cut), quality < 2 and low[i] <= value <= high[i] (NaN: no bound), at most
    the `newest` latest of each hour: per hour their count, newest time, middle values and
    mean time."""
    if not (len(channel_ids) == len(lower) == len(upper) == len(low) == len(high)):
        raise InvalidInput("hourly_middles needs one range and one bound pair per channel id")
    if newest < 1:
        raise InvalidInput("hourly_middles keeps at least one reading an hour")
    for t in (*lower, *upper):
        if t.tzinfo is None or t.utcoffset() is None or (t - _ORIGIN) % timedelta(hours=1):
            raise InvalidInput(f"bound {t.isoformat()} is not on a UTC hour edge")
    if not channel_ids:
        z = np.zeros(0)
        return HourMiddles(np.zeros(0, np.int64), z, np.zeros(0, np.int64), z, z, z)
    # percentile_disc(0.5) is the lower middle value; over the descending order, the upper.
    query = sql.SQL(
        "SELECT channel_id, extract(epoch FROM max(ts))::float8, count(*)::int8, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY value), "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY value DESC), "
        "avg(extract(epoch FROM ts))::float8 FROM ("
        "SELECT r.channel_id, r.ts, r.value, date_bin('1 hour'::interval, r.ts, "
        "'2000-01-01T00:00:00+00:00'::timestamptz) AS b, row_number() OVER (PARTITION BY "
        "r.channel_id, date_bin('1 hour'::interval, r.ts, '2000-01-01T00:00:00+00:00'::"
        "timestamptz) ORDER BY r.ts DESC) AS k "
        "FROM unnest(%s::int4[], %s::timestamptz[], %s::timestamptz[], %s::float8[], "
        "%s::float8[]) AS w(id, lo, hi, vmin, vmax) "
        "JOIN readings r ON r.channel_id = w.id AND r.ts >= w.lo AND r.ts < w.hi "
        "WHERE r.quality < 2 AND (w.vmin IS NULL OR r.value >= w.vmin) "
        "AND (w.vmax IS NULL OR r.value <= w.vmax)) x "
        "WHERE k <= %s GROUP BY channel_id, b ORDER BY channel_id, b")
    rec = _copy_rows(conn, query, (
        [int(c) for c in channel_ids], list(lower), list(upper),
        [None if math.isnan(x) else float(x) for x in low],
        [None if math.isnan(x) else float(x) for x in high], int(newest)), _MIDDLE_ROW)
    return HourMiddles(rec["channel_id"].astype(np.int64), rec["t"].astype(np.float64),
                       rec["n"].astype(np.int64), rec["lo"].astype(np.float64),
                       rec["hi"].astype(np.float64), rec["sec"].astype(np.float64))
