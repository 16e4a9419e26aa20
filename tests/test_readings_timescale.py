"""The readings store on TimescaleDB: the shared query suite (tests/readings_suite.py) plus
what only the hypertable path has: rollups that answer exactly like raw rows, compressed
chunks that still deduplicate, and the policies the migration sets up.

Needs a PostgreSQL server with the timescaledb extension: the test server, or the one at
GEOWARN_TEST_TIMESCALE_URL (an admin URL like GEOWARN_TEST_DATABASE_URL). Without one every
test here skips with "timescaledb extension not available".
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from geowarn import migrate
from geowarn import readings as rd
from geowarn.db import has_timescaledb, timescaledb_available
from geowarn.timescale import TimescaleUnusable
from tests.fixtures.database import create_database, drop_database
from tests.readings_suite import (  # noqa: F401  (imported tests are collected here)
    T0,
    H,
    make_channels,
    random_data,
    store_data,
    test_accumulation_window_edges,
    test_accumulations_match_numpy,
    test_bulk_hourly_middles_match_numpy,
    test_bulk_ranges_match_numpy,
    test_bulk_rollups_match_numpy_on_both_paths,
    test_downsample_hand_computed,
    test_downsample_matches_numpy,
    test_duplicates_stored_once,
    test_engine_late_from_arrival_marks,
    test_engine_late_readings_by_arrival_match_numpy,
    test_latest,
    test_rain_day_by_offset_or_by_zone,
    test_raw_is_start_inclusive_end_exclusive,
    test_raw_matches_numpy,
    test_same_instant_in_another_zone_is_a_duplicate,
)

pytestmark = pytest.mark.timescale
_counter = itertools.count()
NOT_AVAILABLE = "timescaledb extension not available"
ROLLUP_AGGS = ("avg", "min", "max", "sum", "count")
DAY = timedelta(days=1)


@pytest.fixture
def store(pg_admin_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database migrated with TimescaleDB active.

    Migrated per test rather than copied from a template: TimescaleDB's background workers
    keep connections to a database with the extension, which CREATE DATABASE ... TEMPLATE
    refuses."""
    admin = os.environ.get("GEOWARN_TEST_TIMESCALE_URL") or pg_admin_url
    with psycopg.connect(admin, autocommit=True) as c:
        if not timescaledb_available(c):
            pytest.skip(NOT_AVAILABLE)
    name = f"geowarn_ts_{os.getpid()}_{next(_counter)}"
    url = create_database(admin, name)
    try:
        try:
            migrate.upgrade(url)
        except TimescaleUnusable as exc:  # installed, not preloaded: the message says how
            pytest.skip(f"{NOT_AVAILABLE}: {exc}")
        with psycopg.connect(url, autocommit=True) as conn:
            assert has_timescaledb(conn)
            yield conn
    finally:
        drop_database(admin, name)


def refresh(conn: psycopg.Connection) -> None:
    # Cannot run inside a transaction block; `conn` is autocommit.
    for view in ("readings_hourly", "readings_daily"):
        conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (view,))


def assert_rollups_match_raw(conn: psycopg.Connection, ids: list[int]) -> None:
    start, end = T0 - DAY, T0 + 6 * DAY
    for width in (H, DAY):
        for agg in ROLLUP_AGGS:
            fast = rd.downsample(conn, ids, start, end, width, agg)  # type: ignore[arg-type]
            slow = rd.downsample(conn, ids, start, end, width, agg,  # type: ignore[arg-type]
                                 use_rollups=False)
            assert [(b.channel_id, b.start, b.n) for b in fast] \
                == [(b.channel_id, b.start, b.n) for b in slow], (width, agg)
            np.testing.assert_allclose([b.value for b in fast], [b.value for b in slow],
                                       rtol=1e-12, err_msg=f"{width} {agg}")


def test_schema_is_a_compressed_hypertable_with_realtime_rollups(
        store: psycopg.Connection) -> None:
    row = store.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'readings'").fetchone()
    assert row == (True,)
    settings: dict[str, int | None] = dict(store.execute(
        "SELECT attname, segmentby_column_index FROM timescaledb_information.compression_settings "
        "WHERE hypertable_name = 'readings'").fetchall())
    assert settings["channel_id"] == 1 and settings["ts"] is None
    aggs: dict[str, bool] = dict(store.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
    ).fetchall())
    assert aggs == {"readings_hourly": False, "readings_daily": False}
    jobs = {r[0] for r in store.execute(
        "SELECT proc_name FROM timescaledb_information.jobs "
        "WHERE hypertable_name IN ('readings', 'readings_hourly', 'readings_daily') "
        "   OR proc_name = 'policy_refresh_continuous_aggregate'")}
    assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= jobs


def test_rollups_answer_like_raw_before_and_after_refresh(store: psycopg.Connection) -> None:
    ids = make_channels(store, 3)
    data = random_data(np.random.default_rng(5), ids)
    store_data(store, data)
    assert_rollups_match_raw(store, ids)  # nothing materialised: all real-time
    refresh(store)
    assert_rollups_match_raw(store, ids)  # all materialised
    # New readings after the materialised range are picked up in real time.
    rd.write_readings(store, [(ids[0], T0 + timedelta(days=5, minutes=m), 1.0, 0)
                              for m in range(0, 600, 7)])
    assert_rollups_match_raw(store, ids)
    # A late reading inside the materialised range shows after the next refresh (the refresh
    # policy runs every 30 min / 1 h; until then the rollup lags for that bucket).
    rd.write_readings(store, [(ids[1], T0 + timedelta(hours=5, seconds=1), 1000.0, 0)])
    refresh(store)
    assert_rollups_match_raw(store, ids)


def test_downsample_reads_the_rollup_when_it_can(store: psycopg.Connection) -> None:
    (cid,) = make_channels(store, 1)
    rd.write_readings(store, [(cid, T0 + timedelta(minutes=m), 1.0, 0) for m in range(120)])
    refresh(store)
    # Raw rows deleted after materialisation: only the rollup still knows them, which tells
    # which path answered.
    store.execute("DELETE FROM readings WHERE channel_id = %s", (cid,))
    via_rollup = rd.downsample(store, cid, T0, T0 + 2 * H, H, "sum")
    assert [(b.start, b.value, b.n) for b in via_rollup] == [(T0, 60.0, 60), (T0 + H, 60.0, 60)]
    assert rd.downsample(store, cid, T0, T0 + 2 * H, H, "sum", use_rollups=False) == []
    # Not aligned to the bucket edges, or not an avg/min/max/sum/count: raw rows answer.
    assert rd.downsample(store, cid, T0 + timedelta(minutes=1), T0 + 2 * H, H, "sum") == []
    assert rd.downsample(store, cid, T0, T0 + 2 * H, H, "first") == []


def test_compressed_chunks_still_deduplicate(store: psycopg.Connection) -> None:
    ids = make_channels(store, 2)
    data = random_data(np.random.default_rng(6), ids, n=500)
    store_data(store, data)
    chunks = store.execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('readings') c"
    ).fetchall()
    assert chunks
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ts, vals = data[ids[0]]
    again = [(ids[0], epoch + timedelta(microseconds=int(t)), 0.0, 0) for t in ts[:50]]
    new = [(ids[0], T0 + timedelta(seconds=s, milliseconds=500), 2.0, 0) for s in range(20)]
    assert rd.write_readings(store, again + new) == rd.WriteResult(20, 50)
    s = rd.raw(store, ids[0], T0, T0 + 6 * DAY)
    assert len(s) == len(ts) + 20
    assert s.value[np.isin(s.ts.astype(np.int64), ts[:50])].tolist() == vals[:50].tolist()
    assert_rollups_match_raw(store, ids)
