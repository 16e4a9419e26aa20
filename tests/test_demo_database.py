"""The demo's database (demo/database.py): started afresh on every run, its own recognised
whichever demo version built it, anyone else's refused with the command that deletes it.

A newcomer who ran the demo, then `git pull`ed a version whose demo writes other hazard points,
must not be told that the database the older demo built is "not the demo's".
"""

from __future__ import annotations

import psycopg
import pytest

from demo.database import MARK, foreign_rows, is_marked, start_afresh
from geowarn.errors import ConfigurationError
from geowarn.settings import PROJECT_ROOT
from gis import geojson_io, store


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
    return int(row[0]) if row else -1


def _as_an_older_demo_left_it(conn: psycopg.Connection) -> None:
    """What the demos before the sample county wrote: the example hazard points of
    gis/examples (SYN-...), DEMO-... devices, no mark on the schema."""
    text = (PROJECT_ROOT / "gis" / "examples" / "hazards.geojson").read_text(encoding="utf-8")
    report = store.import_records(conn, "hazards", geojson_io.read(text, "hazards"))
    assert not report.errors and report.inserted >= 2
    for device_id in ("DEMO-RAINGAUGE-STORM", "DEMO-CRACKMETER-SPARE"):
        conn.execute("INSERT INTO devices (device_id, kind, profile) VALUES (%s, "
                     "'crack_meter', 'native')", (device_id,))


def test_a_database_an_older_demo_built_is_rebuilt(db_url: str, conn: psycopg.Connection
                                                    ) -> None:
    _as_an_older_demo_left_it(conn)
    assert not is_marked(conn) and foreign_rows(conn) == {}
    assert start_afresh(db_url, reset=False, shown="the test database") > 0
    with psycopg.connect(db_url, autocommit=True) as c:
        assert _count(c, "hazard_points") == 0 and _count(c, "devices") == 0
        assert is_marked(c)
        # The mark makes the database the demo's whatever it holds later (a newcomer may
        # register devices through the console of the demo): the next run rebuilds it.
        c.execute("INSERT INTO devices (device_id, kind, profile) VALUES ('MINE-1', "
                  "'crack_meter', 'native')")
        assert foreign_rows(c) == {}
    assert start_afresh(db_url, reset=False, shown="the test database") > 0


def test_someone_elses_database_is_refused_with_the_command_that_deletes_it(
        db_url: str, conn: psycopg.Connection) -> None:
    _as_an_older_demo_left_it(conn)
    conn.execute("INSERT INTO devices (device_id, kind, profile) VALUES ('REAL-1', "
                 "'crack_meter', 'native')")
    with pytest.raises(ConfigurationError) as refused:
        start_afresh(db_url, reset=False, shown="the test database")
    message = str(refused.value)
    assert "not the demo's (1 devices)" in message
    assert "\n    bash dev.sh demo --reset\n" in message
    assert _count(conn, "devices") == 3  # nothing deleted
    assert start_afresh(db_url, reset=True, shown="the test database") > 0
    with psycopg.connect(db_url) as c:
        assert _count(c, "devices") == 0
        row = c.execute("SELECT obj_description('public'::regnamespace, 'pg_namespace')"
                        ).fetchone()
        assert row == (MARK,)
