"""The readings store's API: raw series, rollups, latest values and rain accumulations.

Every function takes a psycopg connection and answers the same on TimescaleDB and on plain
PostgreSQL; only `downsample` chooses differently (continuous aggregates when they can give
the identical answer, date_bin over raw rows otherwise). Writing lives in readings_write and
is re-exported here, so callers import one module.

Interval conventions (kept here, in one place):
- raw, downsample (closed="left") and device_readings select start <= ts < end, and a bucket
  labelled b holds b <= ts < b + width;
- accumulations, and downsample(closed="right"), use (end - w, end]: a rain gauge reports the
  rain that fell in the interval *ending* at its timestamp, so a reading exactly at end - w
  belongs to the previous window and one exactly at end to this one. A right-closed bucket is
  still labelled by its start b and holds b < ts <= b + width.
The Chinese rain day (08:00 to 08:00 Beijing time) is downsample(bucket=1 day,
origin=08:00+08:00 on any day, closed="right"); its label is the 08:00 that opens it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import psycopg
from psycopg import sql

from geowarn.errors import InvalidInput
from geowarn.readings_write import (
    Pruned,
    Row,
    WriteResult,
    device_channels,
    prune,
    resolve,
    write_readings,
)

__all__ = [
    "ACCUMULATION_WINDOWS", "Bucket", "DeviceReading", "Latest", "Pruned", "Row", "Series",
    "WriteResult",
    "accumulations", "device_channels", "device_readings", "downsample", "latest", "prune",
    "raw", "resolve", "window_bounds", "write_readings",
]

Agg = Literal["avg", "min", "max", "sum", "count", "first", "last"]
ACCUMULATION_WINDOWS: tuple[timedelta, ...] = tuple(
    timedelta(hours=h) for h in (1, 3, 6, 12, 24, 72))
DEFAULT_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

_RAW_AGG = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(*)::float8",
    "first": "(array_agg(value ORDER BY ts))[1]",
    "last": "(array_agg(value ORDER BY ts DESC))[1]",
}
# Continuous aggregate columns (migration 0003) per agg; first/last are not materialised.
_ROLLUP_COL = {"avg": "avg", "min": "min", "max": "max", "sum": "sum", "count": "n::float8"}
_ROLLUPS = {timedelta(hours=1): "readings_hourly", timedelta(days=1): "readings_daily"}


@dataclass(frozen=True)
class Series:
    """One channel's raw readings in time order; ts as UTC datetime64[us]."""

    ts: np.ndarray
    value: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self) -> Iterator[tuple[datetime, float, int]]:
        for us, v, q in zip(self.ts.astype("int64").tolist(), self.value.tolist(),
                            self.quality.tolist(), strict=True):
            yield datetime.fromtimestamp(0, UTC) + timedelta(microseconds=us), v, q


@dataclass(frozen=True)
class Bucket:
    channel_id: int
    start: datetime
    value: float
    n: int


@dataclass(frozen=True)
class Latest:
    ts: datetime
    value: float
    quality: int


def _aware(name: str, t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise InvalidInput(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise InvalidInput(f"{name} {t.isoformat()} has no time zone")
    return t


def _range(start: datetime, end: datetime) -> None:
    _aware("start", start)
    _aware("end", end)
    if end <= start:
        raise InvalidInput(f"end {end.isoformat()} must be after start {start.isoformat()}")


def _ids(channel_ids: int | Sequence[int]) -> list[int]:
    ids = [channel_ids] if isinstance(channel_ids, int) else list(channel_ids)
    if not ids:
        raise InvalidInput("no channel ids given")
    bad = [c for c in ids if not isinstance(c, int) or isinstance(c, bool) or c <= 0]
    if bad:
        raise InvalidInput(f"channel ids must be positive ints, got {bad[:5]!r}")
    return ids


def raw(conn: psycopg.Connection, channel_id: int, start: datetime, end: datetime) -> Series:
    """Readings of one channel with start <= ts < end, oldest first."""
    _range(start, end)
    (cid,) = _ids(channel_id)
    # Microseconds since the epoch, computed exactly by the server (numeric extract, PG 14+),
    # avoid building one tz-aware datetime per row.
    rows = conn.execute(
        "SELECT (extract(epoch FROM ts) * 1000000)::int8, value, quality FROM readings "
        "WHERE channel_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (cid, start, end)).fetchall()
    if not rows:
        return Series(np.empty(0, "datetime64[us]"), np.empty(0, np.float64),
                      np.empty(0, np.int16))
    us, values, quality = zip(*rows, strict=True)
    return Series(np.array(us, np.int64).astype("datetime64[us]"),
                  np.array(values, np.float64), np.array(quality, np.int16))


def _zone(timezone: str | None) -> ZoneInfo | None:
    if timezone is None:
        return None
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {timezone!r} (use an IANA name such as "
                           "'Asia/Shanghai')") from None


def _rollup_view(conn: psycopg.Connection, bucket: timedelta, agg: str, start: datetime,
                 end: datetime, origin: datetime, timezone: str | None,
                 closed: str) -> str | None:
    """The continuous aggregate that answers this request exactly as raw rows would, if any.

    time_bucket's hourly and daily buckets are aligned to UTC midnight, so the origin must be
    too, and start/end must fall on bucket edges (a rollup cannot answer half a bucket)."""
    view = _ROLLUPS.get(bucket)
    if view is None or agg not in _ROLLUP_COL or closed != "left" or timezone is not None:
        return None
    for t in (origin, start, end):
        if (t - DEFAULT_ORIGIN) % bucket:
            return None
    present = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (view,)).fetchone()
    return view if present and present[0] else None


def downsample(conn: psycopg.Connection, channel_ids: int | Sequence[int], start: datetime,
               end: datetime, bucket: timedelta, agg: Agg = "avg", *,
               origin: datetime | None = None, timezone: str | None = None,
               closed: Literal["left", "right"] = "left",
               use_rollups: bool = True) -> list[Bucket]:
    """One value per channel and bucket that holds readings, ordered by channel then time.

    Buckets are `bucket` wide and aligned to `origin` (default 2000-01-01 00:00 UTC). With
    `timezone` (IANA name) buckets follow that zone's wall clock, so a day stays a local day
    across DST changes, and a naive origin is read as wall-clock time there. Only readings
    in the range (see the module docstring for which end is closed) are counted; buckets cut
    by start or end hold only the readings inside the range."""
    ids = _ids(channel_ids)
    _range(start, end)
    if agg not in _RAW_AGG:
        raise InvalidInput(f"agg must be one of {', '.join(_RAW_AGG)}, got {agg!r}")
    if closed not in ("left", "right"):
        raise InvalidInput(f"closed must be 'left' or 'right', got {closed!r}")
    if not isinstance(bucket, timedelta) or bucket <= timedelta(0):
        raise InvalidInput(f"bucket must be a positive timedelta, got {bucket!r}")
    if bucket % timedelta(microseconds=1):
        raise InvalidInput(f"bucket {bucket} is not a whole number of microseconds")
    zone = _zone(timezone)
    if origin is None:
        origin = DEFAULT_ORIGIN if zone is None else datetime(2000, 1, 1)
    if zone is None:
        _aware("origin", origin)
    elif origin.tzinfo is not None:
        origin = origin.astimezone(zone).replace(tzinfo=None)

    if use_rollups:
        view = _rollup_view(conn, bucket, agg, start, end, origin, timezone, closed)
        if view is not None:
            query = sql.SQL(
                "SELECT channel_id, bucket, {col}, n FROM {view} "
                "WHERE channel_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < %(end)s "
                "ORDER BY channel_id, bucket").format(
                    col=sql.SQL(_ROLLUP_COL[agg]), view=sql.Identifier(view))
            rows = conn.execute(query, {"ids": ids, "start": start, "end": end}).fetchall()
            return [Bucket(c, b, float(v), int(n)) for c, b, v, n in rows]

    # Right-closed buckets: shift by one microsecond (the timestamptz resolution) so that
    # b < ts <= b + width lands in b.
    shifted = sql.SQL("ts - interval '1 microsecond'" if closed == "right" else "ts")
    if zone is None:
        binned = sql.SQL("date_bin(%(width)s, {t}, %(origin)s::timestamptz)").format(t=shifted)
    else:
        binned = sql.SQL(
            "date_bin(%(width)s, ({t}) AT TIME ZONE %(tz)s, %(origin)s::timestamp) "
            "AT TIME ZONE %(tz)s").format(t=shifted)
    lower, upper = (">", "<=") if closed == "right" else (">=", "<")
    query = sql.SQL(
        "SELECT channel_id, {binned} AS b, {agg}, count(*) FROM readings "
        "WHERE channel_id = ANY(%(ids)s) AND ts {lower} %(start)s AND ts {upper} %(end)s "
        "GROUP BY channel_id, b ORDER BY channel_id, b").format(
            binned=binned, agg=sql.SQL(_RAW_AGG[agg]),
            lower=sql.SQL(lower), upper=sql.SQL(upper))
    rows = conn.execute(query, {"ids": ids, "start": start, "end": end, "width": bucket,
                                "origin": origin, "tz": timezone}).fetchall()
    return [Bucket(c, b, float(v), int(n)) for c, b, v, n in rows]


def latest(conn: psycopg.Connection, channel_ids: Sequence[int]) -> dict[int, Latest]:
    """The newest reading of each channel that has one (one PK index probe per channel)."""
    ids = _ids(channel_ids)
    rows = conn.execute(
        "SELECT c.id, r.ts, r.value, r.quality FROM unnest(%s::int4[]) AS c(id) "
        "CROSS JOIN LATERAL (SELECT ts, value, quality FROM readings "
        "  WHERE channel_id = c.id ORDER BY ts DESC LIMIT 1) r", (ids,)).fetchall()
    return {c: Latest(ts, v, q) for c, ts, v, q in rows}


def window_bounds(end: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """(exclusive lower, inclusive upper) edges of an accumulation window ending at `end`."""
    return end - window, end


def accumulations(conn: psycopg.Connection, channel_ids: Sequence[int], end: datetime,
                  windows: Sequence[timedelta] = ACCUMULATION_WINDOWS, *,
                  max_quality: int | None = None) -> dict[int, dict[timedelta, float]]:
    """Sum of values over (end - w, end] for every channel and window, in one query.

    Every requested channel is in the answer; a window without readings sums to 0.0.
    `max_quality` keeps only readings at or below that quality code (0 = reliable only)."""
    ids = _ids(channel_ids)
    _aware("end", end)
    wins = list(dict.fromkeys(windows))
    if not wins:
        raise InvalidInput("no accumulation windows given")
    for w in wins:
        if not isinstance(w, timedelta) or w <= timedelta(0):
            raise InvalidInput(f"windows must be positive timedeltas, got {w!r}")
    params: dict[str, object] = {"ids": ids, "end": end,
                                 "lo": window_bounds(end, max(wins))[0], "q": max_quality}
    sums = []
    for i, w in enumerate(wins):
        params[f"lo{i}"] = window_bounds(end, w)[0]
        sums.append(sql.SQL("coalesce(sum(r.value) FILTER (WHERE r.ts > {lo}), 0)").format(
            lo=sql.Placeholder(f"lo{i}")))
    quality = sql.SQL(" AND r.quality <= %(q)s" if max_quality is not None else "")
    query = sql.SQL(
        "SELECT c.id, {sums} FROM unnest(%(ids)s::int4[]) AS c(id) "
        "LEFT JOIN readings r ON r.channel_id = c.id AND r.ts > %(lo)s AND r.ts <= %(end)s"
        "{quality} GROUP BY c.id").format(sums=sql.SQL(", ").join(sums), quality=quality)
    result: dict[int, dict[timedelta, float]] = {}
    for row in conn.execute(query, params):
        result[row[0]] = {w: float(v) for w, v in zip(wins, row[1:], strict=True)}
    return result


@dataclass(frozen=True)
class DeviceReading:
    channel: str
    unit: str
    ts: datetime
    value: float
    quality: int


def device_readings(conn: psycopg.Connection, device_id: str, start: datetime, end: datetime,
                    *, channel: str | None = None, limit: int = 1000) -> list[DeviceReading]:
    """A device's readings with start <= ts < end (the newest `limit`), oldest first."""
    _range(start, end)
    if limit <= 0:
        raise InvalidInput(f"limit must be positive, got {limit}")
    if channel is not None:
        ids = [resolve(conn, device_id, channel)]
    else:
        ids = list(device_channels(conn, device_id).values())
    if not ids:
        return []
    rows = conn.execute(
        "SELECT c.channel, c.unit, r.ts, r.value, r.quality FROM readings r "
        "JOIN channels c USING (channel_id) "
        "WHERE r.channel_id = ANY(%s) AND r.ts >= %s AND r.ts < %s "
        "ORDER BY r.ts DESC, c.channel DESC LIMIT %s", (ids, start, end, limit)).fetchall()
    return [DeviceReading(*row) for row in reversed(rows)]
