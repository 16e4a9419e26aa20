"""The readings store on the database the test server gives (plain PostgreSQL on this
machine): the shared query suite, plus writing, validation, lookup, pruning and the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from geowarn import readings as rd
from geowarn.cli import main
from geowarn.db import has_timescaledb
from geowarn.errors import InvalidInput, NotFound
from geowarn.readings import WriteResult
from geowarn.readings_cli import parse_time
from tests.readings_suite import (  # noqa: F401  (imported tests are collected here)
    T0,
    H,
    make_channels,
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


@pytest.fixture
def store(conn: psycopg.Connection) -> psycopg.Connection:
    return conn


# ---- writing: validation and transactions ------------------------------------------------------

@pytest.mark.parametrize("row, message", [
    ((1, datetime(2026, 7, 1), 1.0, 0), "has no time zone"),
    ((1, T0, float("nan"), 0), "finite number"),
    ((1, T0, float("inf"), 0), "finite number"),
    ((1, "2026-07-01", 1.0, 0), "must be a datetime"),
    ((0, T0, 1.0, 0), "positive int4"),
    ((1, T0, 1.0, -1), "quality"),
    ((1, T0, 1.0), "expected (channel_id, ts, value, quality)"),
])
def test_bad_rows_are_refused_by_index(conn: psycopg.Connection, row: tuple,
                                       message: str) -> None:
    (cid,) = make_channels(conn, 1)
    good = (cid, T0 - H, 1.0, 0)
    with pytest.raises(InvalidInput, match=re.escape(message)) as err:
        rd.write_readings(conn, [good, row])
    assert str(err.value).startswith("row 1:")
    assert len(rd.raw(conn, cid, T0 - 2 * H, T0 + H)) == 0  # nothing of the batch stored


def test_unknown_channel_is_named(conn: psycopg.Connection) -> None:
    (cid,) = make_channels(conn, 1)
    with pytest.raises(NotFound, match=r"no such channel id\(s\): \[9999\]"):
        rd.write_readings(conn, [(cid, T0, 1.0, 0), (9999, T0, 1.0, 0)])
    assert len(rd.raw(conn, cid, T0, T0 + H)) == 0
    # The connection is usable afterwards (the failed batch was rolled back).
    assert rd.write_readings(conn, [(cid, T0, 1.0, 0)]) == WriteResult(1, 0)


def test_writes_inside_the_callers_transaction(conn: psycopg.Connection) -> None:
    (cid,) = make_channels(conn, 1)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), conn.transaction():
        assert rd.write_readings(conn, [(cid, T0, 1.0, 0)]) == WriteResult(1, 0)
        # The staging table must not carry the first batch into the second.
        assert rd.write_readings(conn, [(cid, T0 + H, 2.0, 0), (cid, T0, 5.0, 0)]) \
            == WriteResult(1, 1)
        raise Abort
    assert len(rd.raw(conn, cid, T0, T0 + 2 * H)) == 0  # the caller's rollback undid both
    with conn.transaction():
        assert rd.write_readings(conn, [(cid, T0, 1.0, 0)]) == WriteResult(1, 0)
        assert rd.write_readings(conn, [(cid, T0 + H, 2.0, 0)]) == WriteResult(1, 0)
    assert rd.raw(conn, cid, T0, T0 + 2 * H).value.tolist() == [1.0, 2.0]


def test_empty_batch(conn: psycopg.Connection) -> None:
    assert rd.write_readings(conn, []) == WriteResult(0, 0)


# ---- schema ------------------------------------------------------------------------------------

def test_plain_schema_has_range_indexes_and_foreign_key(conn: psycopg.Connection) -> None:
    if has_timescaledb(conn):
        pytest.skip("server has TimescaleDB: the plain schema is not in use")
    names = {r[0] for r in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'readings'")}
    assert {"readings_pkey", "readings_ts_brin", "readings_ingested_at_idx",
            "readings_channel_ingested_idx"} <= names
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO readings (channel_id, ts, value) VALUES (424242, now(), 1)")


# ---- queries: argument checks and lookup --------------------------------------------------------

def test_query_arguments_are_checked(conn: psycopg.Connection) -> None:
    (cid,) = make_channels(conn, 1)
    with pytest.raises(InvalidInput, match="must be after start"):
        rd.raw(conn, cid, T0, T0)
    with pytest.raises(InvalidInput, match="has no time zone"):
        rd.raw(conn, cid, datetime(2026, 1, 1), T0)
    with pytest.raises(InvalidInput, match="agg must be one of"):
        rd.downsample(conn, cid, T0, T0 + H, H, "median")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="positive timedelta"):
        rd.downsample(conn, cid, T0, T0 + H, timedelta(0))
    with pytest.raises(InvalidInput, match="unknown time zone"):
        rd.downsample(conn, cid, T0, T0 + H, H, timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="no channel ids"):
        rd.latest(conn, [])
    with pytest.raises(InvalidInput, match="positive timedeltas"):
        rd.accumulations(conn, [cid], T0, [timedelta(hours=-1)])


def test_resolve_by_name(conn: psycopg.Connection) -> None:
    ids = make_channels(conn, 2, device_id="RG-0042")
    assert rd.resolve(conn, "RG-0042", "rain") == ids[0]
    assert rd.device_channels(conn, "RG-0042") == {"rain": ids[0], "rain1": ids[1]}
    with pytest.raises(NotFound, match=r"has no channel 'opening' \(channels: rain, rain1\)"):
        rd.resolve(conn, "RG-0042", "opening")
    with pytest.raises(NotFound, match="no such device: 'NOPE'"):
        rd.resolve(conn, "NOPE", "rain")


def test_prune_deletes_only_old_rows(conn: psycopg.Connection) -> None:
    if has_timescaledb(conn):
        pytest.skip("TimescaleDB drops chunks; covered by its own retention policy")
    (cid,) = make_channels(conn, 1)
    now = datetime.now(UTC)
    rd.write_readings(conn, [(cid, now - timedelta(days=d), float(d), 0) for d in (1, 10, 40)])
    assert rd.prune(conn, timedelta(days=30)) == rd.Pruned(1, "readings")
    left = rd.raw(conn, cid, now - timedelta(days=50), now)
    assert sorted(left.value.tolist()) == [1.0, 10.0]


# ---- command line ------------------------------------------------------------------------------

def test_cli_shows_readings(conn: psycopg.Connection, capsys: pytest.CaptureFixture) -> None:
    ids = make_channels(conn, 2, device_id="RG-0007")
    now = datetime.now(UTC).replace(microsecond=0)
    rd.write_readings(conn, [(ids[0], now - timedelta(hours=2), 1.5, 0),
                             (ids[1], now - timedelta(hours=1), 2.5, 1),
                             (ids[0], now - timedelta(hours=30), 9.0, 0)])
    rd.write_readings(conn, [(ids[1], now - timedelta(minutes=30), -0.25, 2)])
    assert main(["readings", "RG-0007"]) == 0
    lines = capsys.readouterr().out.splitlines()
    z = "%Y-%m-%dT%H:%M:%SZ"
    assert lines[0].startswith("readings of RG-0007 from ") and "oldest first" in lines[0]
    assert lines[1:5] == [
        "TIME (UTC)            CHANNEL  VALUE  UNIT  QUALITY",
        f"{now - timedelta(hours=2):{z}}  rain     1.5    mm    reliable",
        f"{now - timedelta(hours=1):{z}}  rain1    2.5    mm    doubtful",
        f"{now - timedelta(minutes=30):{z}}  rain1    -0.25  mm    unreliable"]
    assert lines[5].startswith("3 reading(s)") and "doubtful = sent while" in lines[5]
    assert "q=" not in "\n".join(lines) and len(lines) == 6  # no channel is calibrated
    conn.execute("UPDATE channels SET cal_scale = 1.02, cal_offset = -0.3 WHERE channel_id = %s",
                 (ids[1],))
    assert main(["readings", "RG-0007"]) == 0
    assert capsys.readouterr().out.splitlines()[6] == (
        "rain1: corrected by its calibration (value = 1.02 x sent -0.3) since that was set; "
        "otherwise values are as the device sent them")
    assert main(["readings", "RG-0007", "--channel", "rain", "--since", "2d", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["value"], d["channel"]) for d in data] == [(9.0, "rain"), (1.5, "rain")]
    assert main(["readings", "RG-0007", "--since", "2d", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    # the value column only: the header's period bounds may hold "2.5" (e.g. 10:36:52.5)
    assert "-0.25" in out and "rain1    2.5 " not in out
    assert "(the newest 1; --limit shows more)" in out
    assert main(["readings", "RG-0007", "--since", "30d", "--until", "29d"]) == 0
    err = capsys.readouterr().err
    assert "no readings of RG-0007" in err and "geowarn deadletters --device RG-0007" in err


@pytest.mark.parametrize("argv, message", [
    (["readings", "NOPE"], "no such device: 'NOPE'"),
    (["readings", "RG-0008", "--channel", "opening"], "has no channel 'opening'"),
    (["readings", "RG-0008", "--since", "2026-07-01T08:00"], "has no UTC offset"),
    (["readings", "RG-0008", "--since", "yesterday"], "neither an ISO 8601 time"),
    (["readings", "RG-0008", "--since", "1h", "--until", "2h"], "must be after start"),
    (["readings-prune"], "give --older-than"),
    (["readings-prune", "--older-than", "soon"], "neither a duration"),
])
def test_cli_errors_are_specific(conn: psycopg.Connection, capsys: pytest.CaptureFixture,
                                 argv: list[str], message: str) -> None:
    make_channels(conn, 1, device_id="RG-0008")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_prune(conn: psycopg.Connection, capsys: pytest.CaptureFixture) -> None:
    if has_timescaledb(conn):
        pytest.skip("plain path only")
    (cid,) = make_channels(conn, 1)
    rd.write_readings(conn, [(cid, datetime.now(UTC) - timedelta(days=500), 1.0, 0)])
    assert main(["readings-prune", "--older-than", "400d"]) == 0
    assert capsys.readouterr().out.startswith("pruned 1 readings older than 400 days")


def test_relative_and_iso_times() -> None:
    now = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert parse_time("24h", now) == now - timedelta(hours=24)
    assert parse_time("90s", now) == now - timedelta(seconds=90)
    assert parse_time("2w", now) == now - timedelta(weeks=2)
    assert parse_time("now", now) == now
    assert parse_time("2026-07-01T08:00+08:00", now) == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_time("2026-07-01T00:00Z", now) == datetime(2026, 7, 1, tzinfo=UTC)


# ---- the TimescaleDB-only parts that plain PostgreSQL can still check ---------------------------

def test_rollup_routing_with_a_stand_in_view(conn: psycopg.Connection) -> None:
    """A plain materialized view shaped like the hourly continuous aggregate stands in for it,
    so the choice between rollup and raw rows is tested here too."""
    if has_timescaledb(conn):
        pytest.skip("the real continuous aggregate exists (tests/test_readings_timescale.py)")
    (cid,) = make_channels(conn, 1)
    rd.write_readings(conn, [(cid, T0 + timedelta(minutes=m), float(m), 0) for m in range(120)])
    conn.execute("""CREATE MATERIALIZED VIEW readings_hourly AS
                    SELECT channel_id, date_bin('1 hour', ts, '2000-01-01+00') AS bucket,
                           count(*) AS n, min(value) AS min, max(value) AS max,
                           avg(value) AS avg, sum(value) AS sum
                    FROM readings GROUP BY 1, 2""")
    for agg in ("avg", "min", "max", "sum", "count"):
        fast = rd.downsample(conn, cid, T0, T0 + 2 * H, H, agg)
        slow = rd.downsample(conn, cid, T0, T0 + 2 * H, H, agg,
                             use_rollups=False)
        assert fast == slow and len(fast) == 2, agg
    conn.execute("DELETE FROM readings")  # now only the stand-in knows the values
    assert [b.value for b in rd.downsample(conn, cid, T0, T0 + 2 * H, H, "sum")] \
        == [1770.0, 5370.0]
    # Not answerable from hourly rollups: a cut bucket, a shifted origin, a zone, right-closed
    # buckets, first/last, another width. These read the (now empty) raw table.
    assert rd.downsample(conn, cid, T0, T0 + 90 * timedelta(minutes=1), H, "sum") == []
    assert rd.downsample(conn, cid, T0, T0 + 2 * H, H, "sum",
                         origin=T0 + timedelta(minutes=30)) == []
    assert rd.downsample(conn, cid, T0, T0 + 2 * H, H, "sum", timezone="UTC") == []
    assert rd.downsample(conn, cid, T0, T0 + 2 * H, H, "sum", closed="right") == []
    assert rd.downsample(conn, cid, T0, T0 + 2 * H, H, "first") == []
    assert rd.downsample(conn, cid, T0, T0 + 2 * H, 2 * H, "sum") == []


@pytest.mark.parametrize("overrides, message", [
    ({"chunk_interval": "a while"}, "GEOWARN_CHUNK_INTERVAL='a while' is not a PostgreSQL"),
    ({"compress_after": "-1 day"}, "GEOWARN_COMPRESS_AFTER='-1 day' must be a positive"),
    ({"retention": "30 days"}, "GEOWARN_RETENTION='30 days' must be longer than"),
])
def test_timescale_migration_checks_settings_first(conn: psycopg.Connection,
                                                   overrides: dict, message: str) -> None:
    """The hypertable branch validates its settings before touching TimescaleDB, so these
    errors are the same with or without the extension."""
    import importlib.util

    from geowarn.errors import MigrationError
    from geowarn.migrate import MIGRATIONS_DIR, MigrationContext
    from geowarn.settings import Settings

    spec = importlib.util.spec_from_file_location("m0003", MIGRATIONS_DIR / "0003_readings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ctx = MigrationContext(timescale=True, settings=Settings(**overrides))

    class Undo(Exception):
        pass

    with pytest.raises(Undo), conn.transaction():
        conn.execute("DROP TABLE readings")
        with pytest.raises(MigrationError, match=re.escape(message)):
            module.upgrade(conn, ctx)
        raise Undo
