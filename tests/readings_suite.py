"""The readings query suite, written once and run against every storage path.

A test module imports these tests and defines a `store` fixture: an autocommit connection to
a migrated database of the path it tests (tests/test_readings.py: whatever the server gives,
plain PostgreSQL here; tests/test_readings_timescale.py: TimescaleDB or a clean skip). Each
test checks hand-computed numbers or an independent numpy computation over random data, so
both paths are held to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from geowarn import readings as rd
from geowarn import readings_bulk as rb
from geowarn.errors import InvalidInput

T0 = datetime(2026, 7, 1, tzinfo=UTC)
H = timedelta(hours=1)
BEIJING = timezone(timedelta(hours=8))


def make_channels(conn: psycopg.Connection, n: int, device_id: str = "RG-0001") -> list[int]:
    """A rain gauge device with `n` channels; returns their channel ids."""
    conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'rain_gauge') "
                 "ON CONFLICT DO NOTHING", (device_id,))
    ids = []
    for i in range(n):
        row = conn.execute(
            "INSERT INTO channels (device_id, channel, kind, spec, unit) "
            "VALUES (%s, %s, 'rain_gauge', 'rain', 'mm') RETURNING channel_id",
            (device_id, f"rain{i}" if i else "rain")).fetchone()
        assert row is not None
        ids.append(row[0])
    return ids


def random_data(rng: np.random.Generator, ids: Sequence[int], n: int = 1500,
                span: timedelta = timedelta(days=5)) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per channel: sorted unique ts (int64 µs since epoch, whole seconds) and values."""
    t0 = int(T0.timestamp()) * 1_000_000
    out = {}
    for cid in ids:
        secs = np.sort(rng.choice(int(span.total_seconds()), size=n, replace=False))
        out[cid] = (t0 + secs.astype(np.int64) * 1_000_000, rng.gamma(0.6, 2.0, size=n))
    return out


def store_data(conn: psycopg.Connection, data: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rows = [(cid, epoch + timedelta(microseconds=int(t)), float(v), 0)
            for cid, (ts, vals) in data.items() for t, v in zip(ts, vals, strict=True)]
    result = rd.write_readings(conn, rows)
    assert result == rd.WriteResult(len(rows), 0)


def us(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def numpy_downsample(ts: np.ndarray, vals: np.ndarray, start: datetime, end: datetime,
                     width: timedelta, origin: datetime, agg: str,
                     closed: str = "left") -> list[tuple[int, float, int]]:
    """(bucket start µs, value, n) computed with numpy only."""
    w, o = width // timedelta(microseconds=1), us(origin)
    if closed == "left":
        keep = (ts >= us(start)) & (ts < us(end))
        b = (ts[keep] - o) // w * w + o
    else:
        keep = (ts > us(start)) & (ts <= us(end))
        b = (ts[keep] - 1 - o) // w * w + o
    v = vals[keep]
    out = []
    for edge in np.unique(b):
        sel = v[b == edge]
        value = {"avg": sel.mean(), "min": sel.min(), "max": sel.max(), "sum": sel.sum(),
                 "count": float(len(sel)), "first": sel[0], "last": sel[-1]}[agg]
        out.append((int(edge), float(value), len(sel)))
    return out


def assert_buckets(got: list[rd.Bucket], cid: int,
                   want: list[tuple[int, float, int]]) -> None:
    mine = [b for b in got if b.channel_id == cid]
    assert [us(b.start) for b in mine] == [w[0] for w in want]
    assert [b.n for b in mine] == [w[2] for w in want]
    np.testing.assert_allclose([b.value for b in mine], [w[1] for w in want], rtol=1e-12)


# ---- writing ---------------------------------------------------------------------------------

def test_duplicates_stored_once(store: psycopg.Connection) -> None:
    (cid,) = make_channels(store, 1)
    a, b = (cid, T0, 1.5, 0), (cid, T0 + H, 2.5, 0)
    assert rd.write_readings(store, [a, a, b]) == rd.WriteResult(2, 1)
    # The same rows again, plus one new: only the new one is stored; the first value wins.
    assert rd.write_readings(store, [(cid, T0, 9.0, 0), b, (cid, T0 + 2 * H, 3.0, 1)]) \
        == rd.WriteResult(1, 2)
    series = rd.raw(store, cid, T0, T0 + 3 * H)
    assert series.value.tolist() == [1.5, 2.5, 3.0]
    assert series.quality.tolist() == [0, 0, 1]
    count = store.execute("SELECT count(*) FROM readings").fetchone()
    assert count is not None and count[0] == 3


def test_same_instant_in_another_zone_is_a_duplicate(store: psycopg.Connection) -> None:
    (cid,) = make_channels(store, 1)
    assert rd.write_readings(store, [(cid, T0, 1.0, 0),
                                     (cid, T0.astimezone(BEIJING), 2.0, 0)]) \
        == rd.WriteResult(1, 1)


# ---- raw -------------------------------------------------------------------------------------

def test_raw_is_start_inclusive_end_exclusive(store: psycopg.Connection) -> None:
    cid, other = make_channels(store, 2)
    rd.write_readings(store, [(cid, T0 + i * H, float(i), 0) for i in range(5)]
                      + [(other, T0 + H, 99.0, 0)])
    s = rd.raw(store, cid, T0 + H, T0 + 4 * H)
    assert s.value.tolist() == [1.0, 2.0, 3.0]
    assert s.ts.dtype == np.dtype("datetime64[us]")
    assert [r[0] for r in s.rows()] == [T0 + H, T0 + 2 * H, T0 + 3 * H]
    assert len(rd.raw(store, cid, T0 + 10 * H, T0 + 11 * H)) == 0


def test_raw_matches_numpy(store: psycopg.Connection) -> None:
    ids = make_channels(store, 2)
    data = random_data(np.random.default_rng(1), ids, n=800)
    store_data(store, data)
    start, end = T0 + timedelta(hours=13, seconds=17), T0 + timedelta(days=3, minutes=5)
    ts, vals = data[ids[1]]
    keep = (ts >= us(start)) & (ts < us(end))
    s = rd.raw(store, ids[1], start, end)
    assert s.ts.astype(np.int64).tolist() == ts[keep].tolist()
    assert s.value.tolist() == vals[keep].tolist()


# ---- downsample ------------------------------------------------------------------------------

def test_downsample_hand_computed(store: psycopg.Connection) -> None:
    (cid,) = make_channels(store, 1)
    # 00:00 1, 00:30 3, 01:00 5, 02:59:59 7 -> hour 0: {1, 3}, hour 1: {5}, hour 2: {7}.
    rd.write_readings(store, [(cid, T0, 1.0, 0), (cid, T0 + H / 2, 3.0, 0),
                              (cid, T0 + H, 5.0, 0),
                              (cid, T0 + 3 * H - timedelta(seconds=1), 7.0, 0)])
    want = {"avg": [2.0, 5.0, 7.0], "min": [1.0, 5.0, 7.0], "max": [3.0, 5.0, 7.0],
            "sum": [4.0, 5.0, 7.0], "count": [2.0, 1.0, 1.0], "first": [1.0, 5.0, 7.0],
            "last": [3.0, 5.0, 7.0]}
    for agg, values in want.items():
        got = rd.downsample(store, cid, T0, T0 + 4 * H, H, agg)  # type: ignore[arg-type]
        assert [b.value for b in got] == values, agg
        assert [b.start for b in got] == [T0, T0 + H, T0 + 2 * H]
        assert [b.n for b in got] == [2, 1, 1]
    # Empty range: no bucket at all, not a zero bucket.
    assert rd.downsample(store, cid, T0 + 5 * H, T0 + 9 * H, H, "sum") == []
    # Right-closed: the reading at 01:00 closes the first hour.
    got = rd.downsample(store, cid, T0 - H, T0 + 3 * H, H, "sum", closed="right")
    assert [(b.start, b.value) for b in got] == [(T0 - H, 1.0), (T0, 8.0), (T0 + 2 * H, 7.0)]


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count", "first", "last"])
def test_downsample_matches_numpy(store: psycopg.Connection, agg: str) -> None:
    ids = make_channels(store, 3)
    data = random_data(np.random.default_rng(2), ids)
    store_data(store, data)
    cases = [
        # (start, end, width, origin, closed): aligned hourly and daily (rollup-eligible on
        # TimescaleDB), then ranges cutting buckets, odd widths and shifted origins.
        (T0, T0 + timedelta(days=5), H, rd.DEFAULT_ORIGIN, "left"),
        (T0, T0 + timedelta(days=5), timedelta(days=1), rd.DEFAULT_ORIGIN, "left"),
        (T0 + timedelta(minutes=17), T0 + timedelta(days=2, hours=5), H, rd.DEFAULT_ORIGIN,
         "left"),
        (T0, T0 + timedelta(days=4), timedelta(minutes=90),
         datetime(2026, 1, 1, 0, 20, tzinfo=UTC), "left"),
        (T0, T0 + timedelta(days=5), timedelta(days=1), datetime(2000, 1, 1, 8, tzinfo=BEIJING),
         "right"),
    ]
    for start, end, width, origin, closed in cases:
        got = rd.downsample(store, ids, start, end, width, agg,  # type: ignore[arg-type]
                            origin=origin, closed=closed)  # type: ignore[arg-type]
        assert [b.channel_id for b in got] == sorted(b.channel_id for b in got)
        for cid in ids:
            assert_buckets(got, cid, numpy_downsample(*data[cid], start, end, width, origin,
                                                      agg, closed))


def test_rain_day_by_offset_or_by_zone(store: psycopg.Connection) -> None:
    (cid,) = make_channels(store, 1)
    day = datetime(2026, 7, 2, 8, tzinfo=BEIJING)  # opens the rain day of 3 July
    rd.write_readings(store, [(cid, day, 1.0, 0),                        # closes 1 July 08:00 day
                              (cid, day + timedelta(seconds=1), 2.0, 0),  # opens this day
                              (cid, day + timedelta(hours=24), 4.0, 0),   # closes this day
                              (cid, day + timedelta(hours=24, seconds=1), 8.0, 0)])
    start, end = day - timedelta(days=1), day + timedelta(days=2)
    by_offset = rd.downsample(store, cid, start, end, timedelta(days=1), "sum",
                              origin=datetime(2000, 1, 1, 8, tzinfo=BEIJING), closed="right")
    by_zone = rd.downsample(store, cid, start, end, timedelta(days=1), "sum",
                            origin=datetime(2000, 1, 1, 8), timezone="Asia/Shanghai",
                            closed="right")
    want = [(day - timedelta(days=1), 1.0), (day, 6.0), (day + timedelta(days=1), 8.0)]
    assert [(b.start, b.value) for b in by_offset] == want
    assert [(b.start, b.value) for b in by_zone] == want


# ---- latest ----------------------------------------------------------------------------------

def test_latest(store: psycopg.Connection) -> None:
    ids = make_channels(store, 4)
    data = random_data(np.random.default_rng(3), ids[:3], n=300)
    store_data(store, data)
    got = rd.latest(store, ids)
    assert set(got) == set(ids[:3])  # the channel without readings is absent
    for cid in ids[:3]:
        ts, vals = data[cid]
        assert us(got[cid].ts) == ts[-1]
        assert got[cid].value == vals[-1]
        assert got[cid].quality == 0


# ---- accumulations ---------------------------------------------------------------------------

def test_accumulation_window_edges(store: psycopg.Connection) -> None:
    cid, empty = make_channels(store, 2)
    end = T0 + timedelta(days=3)
    rd.write_readings(store, [
        (cid, end, 1.0, 0),                          # at end: in every window
        (cid, end - H, 10.0, 0),                     # exactly end - 1 h: not in 1 h
        (cid, end - H + timedelta(seconds=1), 100.0, 2),
        (cid, end - 3 * H, 1000.0, 0),               # exactly end - 3 h: in 6 h, not 3 h
        (cid, end - timedelta(hours=72), 5.0, 0),    # exactly end - 72 h: in none
        (cid, end + timedelta(seconds=1), 7.0, 0),   # after end: in none
    ])
    got = rd.accumulations(store, [cid, empty], end)
    hours = {w // H: v for w, v in got[cid].items()}
    assert hours == {1: 101.0, 3: 111.0, 6: 1111.0, 12: 1111.0, 24: 1111.0, 72: 1111.0}
    assert got[empty] == {w: 0.0 for w in rd.ACCUMULATION_WINDOWS}
    reliable = rd.accumulations(store, [cid], end, [H, 6 * H], max_quality=0)
    assert reliable[cid] == {H: 1.0, 6 * H: 1011.0}


def test_accumulations_match_numpy(store: psycopg.Connection) -> None:
    ids = make_channels(store, 3)
    data = random_data(np.random.default_rng(4), ids, n=2000)
    store_data(store, data)
    # An end that falls exactly on stored readings of some channel, so edges are exercised.
    end_us = int(data[ids[0]][0][1200])
    end = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=end_us)
    got = rd.accumulations(store, ids, end)
    for cid in ids:
        ts, vals = data[cid]
        for w in rd.ACCUMULATION_WINDOWS:
            keep = (ts > end_us - w // timedelta(microseconds=1)) & (ts <= end_us)
            assert got[cid][w] == pytest.approx(vals[keep].sum(), rel=1e-12, abs=1e-12)


# ---- bulk reads (geowarn/readings_bulk.py: the engine's cold start) ---------------------------

def test_bulk_ranges_match_numpy(store: psycopg.Connection) -> None:
    ids = make_channels(store, 3)
    data = random_data(np.random.default_rng(5), ids)
    store_data(store, data)
    lo: list[datetime | float] = [T0 + timedelta(hours=7), -np.inf,
                                  T0 + timedelta(days=1, minutes=3)]
    hi: list[datetime | float] = [T0 + timedelta(days=2), T0 + timedelta(days=1), np.inf]
    for inclusive in (False, True):
        got = rb.ranges(store, ids, lo, hi, inclusive_lower=inclusive)
        assert got.t.dtype == np.float64 and got.quality.dtype == np.int8
        for cid, a, b in zip(ids, lo, hi, strict=True):
            ts, vals = data[cid]
            low = -np.inf if not isinstance(a, datetime) else us(a)
            high = np.inf if not isinstance(b, datetime) else us(b)
            keep = ((ts >= low) if inclusive else (ts > low)) & (ts <= high)
            mine = got.channel_id == cid
            assert np.array_equal(got.t[mine] * 1e6, ts[keep].astype(np.float64))
            assert np.array_equal(got.value[mine], vals[keep])
    # Ordered by channel and time whatever order the channels are asked in.
    back = rb.ranges(store, ids[::-1], lo[::-1], hi[::-1])
    forward = rb.ranges(store, ids, lo, hi)
    assert np.array_equal(back.channel_id, forward.channel_id)
    assert np.array_equal(back.t, forward.t) and np.array_equal(back.value, forward.value)
    assert np.all(np.diff(forward.channel_id) >= 0)
    # Bounds exactly on a reading: (lo, hi] keeps the upper one only.
    ts0 = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(data[ids[0]][0][10]))
    edge = rb.ranges(store, [ids[0]], [ts0], [ts0])
    assert edge.t.size == 0
    assert rb.ranges(store, [ids[0]], [ts0], [ts0], inclusive_lower=True).t.size == 1
    assert rb.ranges(store, [], [], []).t.size == 0
    with pytest.raises(InvalidInput, match="no time zone"):
        rb.ranges(store, [ids[0]], [datetime(2026, 7, 1)], [np.inf])


def test_bulk_rollups_match_numpy_on_both_paths(store: psycopg.Connection) -> None:
    ids = make_channels(store, 3)
    data = random_data(np.random.default_rng(6), ids)
    store_data(store, data)
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=6)
    for width in (H, timedelta(days=1)):
        paths = [rb.rollups(store, ids, start, end, width, use_rollups=u) for u in (True, False)]
        for got in paths:
            for cid in ids:
                mine = got.channel_id == cid
                for agg in ("avg", "min", "max", "sum", "count"):
                    want = numpy_downsample(*data[cid], start, end, width, rd.DEFAULT_ORIGIN,
                                            agg)
                    assert (got.t[mine] * 1e6).astype(np.int64).tolist() == [w[0] for w in want]
                    assert got.n[mine].tolist() == [w[2] for w in want]
                    col = got.n if agg == "count" else getattr(got, agg)
                    np.testing.assert_allclose(col[mine], [w[1] for w in want], rtol=1e-12)
    with pytest.raises(InvalidInput, match="not on a UTC hour edge"):
        rb.rollups(store, ids, T0 + timedelta(minutes=5), end, H)
    with pytest.raises(InvalidInput, match="hourly or daily"):
        rb.rollups(store, ids, start, end, timedelta(minutes=10))


def test_bulk_hourly_middles_match_numpy(store: psycopg.Connection) -> None:
    """The engine's hourly displacement medians from the store: per hour the middle values of
    the newest reliable readings inside the bounds, as numpy computes them from raw rows."""
    ids = make_channels(store, 3)
    rng = np.random.default_rng(9)
    data = random_data(rng, ids, n=1200, span=timedelta(days=2))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    quality = {cid: np.where(rng.random(ts.size) < 0.1, 2, 0) for cid, (ts, _) in data.items()}
    rd.write_readings(store, [(cid, epoch + timedelta(microseconds=int(t)), float(v),
                               int(q)) for cid, (ts, vals) in data.items()
                              for t, v, q in zip(ts, vals, quality[cid], strict=True)])
    lo = [T0, T0 + timedelta(hours=5), T0]
    hi = [T0 + timedelta(days=2), T0 + timedelta(days=1), T0 + timedelta(hours=30)]
    low, high = [np.nan, 0.2, np.nan], [np.nan, 3.0, 1.5]
    newest = 7
    got = rb.hourly_middles(store, ids, lo, hi, low, high, newest=newest)
    assert np.all(np.diff(got.channel_id) >= 0)
    for cid, a, b, vmin, vmax in zip(ids, lo, hi, low, high, strict=True):
        ts, vals = data[cid]
        keep = ((ts >= us(a)) & (ts < us(b)) & (quality[cid] < 2)
                & ~(vals < vmin) & ~(vals > vmax))
        t_k, v_k = ts[keep], vals[keep]
        hour = t_k // 3_600_000_000
        want = []
        for h in np.unique(hour):
            v = v_k[hour == h][-newest:]  # the newest of the hour
            s = np.sort(v)
            t_h = t_k[hour == h][-newest:]
            want.append((t_k[hour == h][-1], v.size, s[(v.size - 1) // 2], s[v.size // 2],
                         t_h.mean() / 1e6))
        mine = got.channel_id == cid
        assert (got.t[mine] * 1e6).round().astype(np.int64).tolist() == [w[0] for w in want]
        assert got.n[mine].tolist() == [w[1] for w in want]
        assert got.lo[mine].tolist() == [w[2] for w in want]
        assert got.hi[mine].tolist() == [w[3] for w in want]
        np.testing.assert_allclose(got.sec[mine], [w[4] for w in want], rtol=0, atol=1e-6)
    assert rb.hourly_middles(store, [], [], [], [], [], newest=1).t.size == 0
    with pytest.raises(InvalidInput, match="not on a UTC hour edge"):
        rb.hourly_middles(store, ids[:1], [T0 + timedelta(minutes=5)], [hi[0]], [np.nan],
                          [np.nan], newest=1)


def test_engine_late_readings_by_arrival_match_numpy(store: psycopg.Connection) -> None:
    """The engine's arrival query (alerts/engine/data.py load_late): readings stored at or
    after a time whose data time lies in (watermark − 72 h, watermark) of their channel,
    whatever their data time, the same on both paths."""
    from alerts.engine import data as engine_data
    from alerts.engine.rules import resolve
    from alerts.engine.tick import EngineState, build_setup

    ids = make_channels(store, 3, "RG-LATE")
    data = random_data(np.random.default_rng(11), ids, n=600)
    store_data(store, data)
    # Half of each channel's readings arrived a day ago (before the query's arrival bound).
    arrived_long_ago = {cid: ts[::2] for cid, (ts, _) in data.items()}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for cid, ts in arrived_long_ago.items():
        store.execute("UPDATE readings SET ingested_at = now() - interval '1 day' "
                      "WHERE channel_id = %s AND ts = ANY(%s)",
                      (cid, [epoch + timedelta(microseconds=int(t)) for t in ts]))
    channels = [c for c in engine_data.load_channels(store) if c.channel_id in ids]
    setup = build_setup(channels, resolve(channels, {}))
    state = EngineState.initial(setup)
    marks = {ids[0]: T0 + timedelta(days=4), ids[1]: T0 + timedelta(days=1, hours=5)}
    for cid, m in marks.items():  # ids[2] was never judged: nothing is late for it
        state.watermark[setup.index[cid]] = m.timestamp()
    since = datetime.now(UTC) - timedelta(hours=1)
    got = engine_data.load_late(store, setup, state, since)
    assert np.all(np.diff(got.ch) >= 0)
    for cid in ids:
        ts, vals = data[cid]
        keep = np.zeros(ts.size, bool)
        if cid in marks:
            m = us(marks[cid])
            keep = (ts < m) & (ts > m - 72 * 3600 * 1_000_000) & ~np.isin(
                ts, arrived_long_ago[cid])
        mine = got.ch == setup.index[cid]
        assert keep.sum() > 0 or cid not in marks
        assert np.array_equal(np.rint(got.t[mine] * 1e6), ts[keep].astype(np.float64))
        assert np.array_equal(got.v[mine], vals[keep])
    # Only some channels asked: the others give nothing.
    one = engine_data.load_late(store, setup, state, since, [setup.index[ids[1]]])
    assert set(one.ch.tolist()) == {setup.index[ids[1]]}


def test_engine_late_from_arrival_marks(store: psycopg.Connection) -> None:
    """load_late from the engine's per-channel arrival marks (alerts/engine/arrival.py), the
    same on both paths: a backlog behind the watermark stored since a channel's mark comes
    back; once the marks moved past it, it does not come back (only what arrived since);
    a channel keeps its own mark; readings at or older than watermark − 72 h and at or
    after the watermark never come, and on TimescaleDB the chunks wholly older than the
    query's lower bound on ts are not in its plan."""
    from alerts.engine import arrival
    from alerts.engine import data as engine_data
    from alerts.engine.rules import resolve
    from alerts.engine.tick import EngineState, build_setup
    from geowarn.db import has_timescaledb

    a, b = make_channels(store, 2, "RG-MARK")
    wm = {a: T0 + timedelta(days=5), b: T0 + timedelta(days=5, hours=1)}

    def write(rows: list[tuple[int, datetime]], ago: str | None = None) -> None:
        rd.write_readings(store, [(c, t, 1.0 + i, 0) for i, (c, t) in enumerate(rows)])
        if ago is not None:  # stored that long before now
            store.execute("UPDATE readings SET ingested_at = now() - %s::interval "
                          "WHERE (channel_id, ts) IN (SELECT * FROM unnest(%s::int4[], "
                          "%s::timestamptz[]))", (ago, [c for c, _ in rows],
                                                  [t for _, t in rows]))

    # Judged long ago: each channel's live readings up to its watermark, 4 days of them.
    write([(c, w - k * H) for c, w in wm.items() for k in range(0, 96)], ago="1 day")
    # Stored since the old marks, behind the watermarks: the backlog (A: 2 readings, B: 1),
    # and readings that never come: one at A's watermark (judged there), one older than
    # A's watermark − 72 h, one 30 days back (its own chunk), one after A's watermark.
    backlog = [(a, wm[a] - 2 * H - timedelta(minutes=30)), (a, wm[a] - H / 2),
               (b, wm[b] - 3 * H - timedelta(minutes=10))]
    never = [(a, wm[a] - 73 * H - timedelta(minutes=5)), (a, wm[a] - timedelta(days=30)),
             (a, wm[a] + H / 2)]
    store.execute("DELETE FROM readings WHERE channel_id = %s AND ts = %s", (a, wm[a]))
    write([*backlog, *never, (a, wm[a])], ago="1 hour")
    channels = [c for c in engine_data.load_channels(store) if c.channel_id in wm]
    setup = build_setup(channels, resolve(channels, {}))
    state = EngineState.initial(setup)
    for c, w in wm.items():
        state.watermark[setup.index[c]] = w.timestamp()

    def got(since: np.ndarray) -> set[tuple[int, datetime]]:
        late = engine_data.load_late(store, setup, state, since)
        assert np.all(np.diff(late.ch) >= 0)
        return {(setup.channels[int(i)].channel_id, datetime.fromtimestamp(float(t), UTC))
                for i, t in zip(late.ch, late.t, strict=True)}

    row = store.execute("SELECT now() - interval '2 hours'").fetchone()
    assert row is not None
    old = np.full(setup.n, row[0].timestamp())
    assert got(old) == set(backlog)
    # Every channel looked at: the marks move. A new backlog reading of A arrives.
    looked = arrival.ArrivalMarks.looked_at_all(setup, arrival.take(store))
    more = (a, wm[a] - H - timedelta(minutes=20))
    write([more])
    assert got(looked.at) == {more}
    # Only A looked at then (a notified step): B reads from its own, older mark.
    only_a = looked.at.copy()
    only_a[setup.index[b]] = old[0]
    assert got(only_a) == {more} | {x for x in backlog if x[0] == b}
    if has_timescaledb(store):
        span = max(engine_data.RAIN_WINDOWS_H) * 3600.0
        lowest = datetime.fromtimestamp(min(w.timestamp() for w in wm.values()) - span, UTC)
        plan = "\n".join(r[0] for r in store.execute("EXPLAIN " + engine_data.LATE_SQL, {
            "ids": [a, b], "marks": [wm[a].timestamp(), wm[b].timestamp()],
            "sinces": old[:2].tolist(), "span": span, "lowest": lowest}))
        chunks = store.execute(
            "SELECT chunk_name, range_end <= %s FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'readings'", (lowest,)).fetchall()
        before = [n for n, gone in chunks if gone]
        after = [n for n, gone in chunks if not gone]
        assert before and after  # 30 days back: a chunk of its own
        assert not [n for n in before if n in plan], plan
        assert any(n in plan for n in after), plan
