"""`geowarn db upgrade` and GEOWARN_TIMESCALEDB=auto|require|off on every server state.

The machine's PostgreSQL has no TimescaleDB, so the "installed but not preloaded" state (the
usual one right after installing the package, where CREATE EXTENSION ends the session with
FATAL) is faked at the probe: the server is asked for real, then told it has the package.
Against a real TimescaleDB (GEOWARN_TEST_TIMESCALE_URL) the last tests run the same upgrade.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from geowarn import migrate, timescale
from geowarn.cli import main
from geowarn.settings import override_settings
from geowarn.timescale import TimescaleProbe, TimescaleUnusable, decide, preload_line
from tests.fixtures.database import create_database, drop_database

_counter = itertools.count()
NOT_INSTALLED = TimescaleProbe(None, None, "")
NOT_PRELOADED = TimescaleProbe(None, "2.17.2", "pg_stat_statements",
                               "/etc/postgresql/16/main/postgresql.conf")
READY = TimescaleProbe(None, "2.17.2", "timescaledb")
UNREADABLE = TimescaleProbe(None, "2.17.2", None)  # a role that may not read the setting
ACTIVE = TimescaleProbe("2.17.2", "2.17.2", "timescaledb")


@pytest.mark.parametrize(("state", "mode", "schema_exists", "expected"), [
    (NOT_INSTALLED, "auto", False, False),
    (NOT_INSTALLED, "off", False, False),
    (NOT_INSTALLED, "require", False, "not installed"),
    (NOT_PRELOADED, "auto", False, "not preloaded"),
    (NOT_PRELOADED, "require", False, "not preloaded"),
    (NOT_PRELOADED, "off", False, False),
    (READY, "auto", False, True),
    (READY, "require", False, True),
    (READY, "off", False, False),
    (UNREADABLE, "auto", False, True),  # tried, on a connection of its own
    (READY, "auto", True, False),  # a plain schema stays plain
    (READY, "require", True, "built on plain PostgreSQL"),
    (ACTIVE, "off", True, True),  # the tables were built on it
    (ACTIVE, "auto", True, True),
])
def test_decide(state: TimescaleProbe, mode: timescale.TimescaleMode, schema_exists: bool,
                expected: bool | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(TimescaleUnusable, match=expected):
            decide(state, mode, schema_exists=schema_exists)
    else:
        assert decide(state, mode, schema_exists=schema_exists) is expected


@pytest.mark.parametrize(("preload", "preloaded"), [
    ("", False), ("pg_stat_statements", False), ("timescaledb", True),
    ("pg_stat_statements, timescaledb", True), ('"timescaledb"', True),
    ("$libdir/timescaledb", True), ("timescaledb_toolkit", False),
])
def test_preloaded_parses_the_setting(preload: str, preloaded: bool) -> None:
    assert TimescaleProbe(None, "2.17.2", preload).preloaded is preloaded


def test_the_message_names_the_line_to_add_and_keeps_what_is_preloaded() -> None:
    assert preload_line(NOT_PRELOADED) == \
        "shared_preload_libraries = 'pg_stat_statements,timescaledb'"
    assert preload_line(NOT_INSTALLED) == "shared_preload_libraries = 'timescaledb'"
    text = timescale.not_preloaded_message(NOT_PRELOADED)
    assert "postgresql.conf (/etc/postgresql/16/main/postgresql.conf)" in text
    assert "restart PostgreSQL" in text and "GEOWARN_TIMESCALEDB=off" in text


def _fake_installed(monkeypatch: pytest.MonkeyPatch, preload: str | None) -> None:
    """The real probe, plus "the timescaledb package is installed" (and, when `preload` is
    not None, the given shared_preload_libraries)."""
    real = timescale.probe

    def fake(conn: psycopg.Connection) -> TimescaleProbe:
        state = real(conn)
        return replace(state, available_version="2.17.2",
                       preload=state.preload if preload is None else preload)

    monkeypatch.setattr(timescale, "probe", fake)


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def test_upgrade_on_installed_but_not_preloaded_says_what_to_do(
        empty_db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _fake_installed(monkeypatch, preload="")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "geowarn: error: TimescaleDB 2.17.2 is installed on this PostgreSQL server but " \
           "not preloaded" in err
    assert "    shared_preload_libraries = 'timescaledb'\n" in err
    assert "restart PostgreSQL" in err and "Traceback" not in err
    assert "connection is closed" not in err
    assert _tables(empty_db_url) == []  # nothing half-done
    # db info says the same, and the fix.
    assert main(["db", "info"]) == 0
    assert "installed (2.17.2) but not preloaded: add shared_preload_libraries = " \
           "'timescaledb'" in capsys.readouterr().out

    # GEOWARN_TIMESCALEDB=off: the plain PostgreSQL path, on purpose.
    override_settings(database_url=empty_db_url, timescaledb="off")
    assert main(["db", "upgrade"]) == 0
    assert "applied 0003_readings" in capsys.readouterr().out
    assert "readings" in _tables(empty_db_url)


def test_a_failing_create_extension_cannot_break_the_upgrade_connection(
        empty_db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Preloading unknown (a role that may not read the setting): CREATE EXTENSION is tried
    for real on a connection of its own, fails (no such extension here), and the error says
    what to do; the upgrade's own connection and lock are released cleanly."""
    _fake_installed(monkeypatch, preload=None)
    monkeypatch.setattr(timescale, "_show", lambda conn, setting: None)
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "TimescaleDB is installed but could not be enabled" in err
    assert "GEOWARN_TIMESCALEDB=off" in err and "Traceback" not in err
    monkeypatch.undo()
    # The advisory lock was released: a real upgrade goes through at once.
    assert migrate.upgrade(empty_db_url)


def test_require_on_plain_postgresql_is_an_error(empty_db_url: str) -> None:
    override_settings(database_url=empty_db_url, timescaledb="require")
    with pytest.raises(TimescaleUnusable, match="not installed on this PostgreSQL server"):
        migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == []


def test_invalid_mode_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOWARN_TIMESCALEDB", "yes")
    from geowarn.settings import reset_settings

    reset_settings()
    try:
        assert main(["db", "info"]) == 2
    finally:
        monkeypatch.delenv("GEOWARN_TIMESCALEDB")
        reset_settings()
    assert "GEOWARN_TIMESCALEDB: Input should be 'auto', 'require' or 'off'" in \
        capsys.readouterr().err


# --- a real TimescaleDB ------------------------------------------------------------------------
@pytest.fixture
def timescale_admin_url() -> str:
    url = os.environ.get("GEOWARN_TEST_TIMESCALE_URL")
    if not url:
        pytest.skip("GEOWARN_TEST_TIMESCALE_URL is not set (no TimescaleDB server here)")
    return url


@pytest.fixture
def fresh_timescale_db(timescale_admin_url: str) -> Iterator[str]:
    name = f"geowarn_ts_{os.getpid()}_{next(_counter)}"
    url = create_database(timescale_admin_url, name)
    try:
        yield url
    finally:
        drop_database(timescale_admin_url, name)


@pytest.mark.timescale
@pytest.mark.parametrize(("mode", "hypertable"), [("auto", True), ("require", True),
                                                  ("off", False)])
def test_upgrade_on_a_real_timescaledb(fresh_timescale_db: str, mode: str,
                                       hypertable: bool) -> None:
    override_settings(database_url=fresh_timescale_db, timescaledb=mode)
    with psycopg.connect(fresh_timescale_db, autocommit=True) as conn:
        state = timescale.probe(conn)
    if state.preloaded is False and mode != "off":
        # The very state this file is about, on a real server: the error, not a crash.
        with pytest.raises(TimescaleUnusable, match="not preloaded"):
            migrate.upgrade(fresh_timescale_db)
        return
    migrate.upgrade(fresh_timescale_db)
    with psycopg.connect(fresh_timescale_db) as conn:
        row = conn.execute("SELECT to_regclass('timescaledb_information.hypertables') "
                           "IS NOT NULL").fetchone()
        found = bool(row and row[0]) and conn.execute(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'readings'").fetchone() is not None
    assert found is hypertable
    assert migrate.upgrade(fresh_timescale_db) == []  # idempotent on either path
