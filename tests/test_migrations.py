"""Schema migrations: idempotent, recorded, safe from several processes at once."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from geowarn import migrate


def _schema_fingerprint(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable
               FROM information_schema.columns WHERE table_schema = 'public'
               ORDER BY table_name, column_name""").fetchall()


def test_upgrade_twice_applies_once(empty_db_url: str) -> None:
    first = migrate.upgrade(empty_db_url)
    assert [m.version for m in first] == [m.version for m in migrate.discover()]
    fingerprint = _schema_fingerprint(empty_db_url)
    assert migrate.upgrade(empty_db_url) == []
    assert _schema_fingerprint(empty_db_url) == fingerprint
    info = migrate.info(empty_db_url)
    assert info.pending == ()
    assert info.level == migrate.discover()[-1].version


def test_concurrent_upgrades_leave_one_schema(empty_db_url: str, db_url: str) -> None:
    """Two `geowarn db upgrade` processes at once on an empty database."""
    env_cmd = [sys.executable, "-m", "geowarn", "db", "upgrade"]
    procs = [subprocess.Popen(env_cmd, env={"GEOWARN_DATABASE_URL": empty_db_url,
                                            "PATH": "/usr/bin:/bin"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in migrate.discover()]
    # Same schema as a database migrated the ordinary way (the test template).
    assert _schema_fingerprint(empty_db_url) == _schema_fingerprint(db_url)


def test_db_info_reports_level(db_url: str, capsys) -> None:
    from geowarn.cli import main

    assert main(["db", "info"]) == 0
    out = capsys.readouterr().out
    assert "PostgreSQL" in out
    assert "timescaledb:" in out
    assert f"level {migrate.discover()[-1].version:04d}" in out
    assert "0 pending" in out
