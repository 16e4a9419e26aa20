"""The demo's database: the embedded demo database (or GEOWARN_DATABASE_URL), started afresh
on every run so that the story's alerts, messages and demo login are the only ones in it.

Starting afresh deletes what the database holds, so the demo first checks that it holds
nothing but an earlier demo's data (its devices, hazard points and user are all the demo's);
anything else is refused unless `--reset` says to delete it anyway.
"""

from __future__ import annotations

import psycopg

from geowarn import migrate
from geowarn.errors import ConfigurationError

DEMO_PREFIX = "DEMO-"
DEMO_USER = "demo"


def foreign_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows a demo did not write, per table (empty: only demo data, or no schema yet)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return {}
    checks = {
        "devices": "SELECT count(*) FROM devices WHERE device_id NOT LIKE 'DEMO-%'",
        "hazard points": "SELECT count(*) FROM hazard_points WHERE hazard_id NOT LIKE 'DEMO-%'",
        "API users": "SELECT count(*) FROM api_users WHERE username <> 'demo'",
    }
    out = {}
    for what, sql in checks.items():
        try:
            row = conn.execute(sql).fetchone()
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            continue
        if row and row[0]:
            out[what] = int(row[0])
    return out


def start_afresh(db_url: str, *, reset: bool, shown: str) -> int:
    """Empty the database (after the check above) and apply every migration; returns how
    many were applied."""
    with psycopg.connect(db_url) as conn:
        foreign = foreign_rows(conn)
        if foreign and not reset:
            what = ", ".join(f"{n} {t}" for t, n in foreign.items())
            raise ConfigurationError(
                f"the demo starts its database afresh, and {shown} holds data that is not the "
                f"demo's ({what}): point GEOWARN_DATABASE_URL at an empty database (e.g. "
                "`createdb geowarn_demo`), or run the demo with --reset to delete it")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.commit()
    return len(migrate.upgrade(db_url))
