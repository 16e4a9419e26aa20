"""The demo's database: the embedded demo database (or GEOWARN_DATABASE_URL), started afresh
on every run so that the story's alerts, messages and demo login are the only ones in it.

Starting afresh deletes what the database holds, so the demo first checks that it is its
own: a database the demo built carries a mark (the comment on its schema, written right
after the schema is created); a database an older demo built before the mark existed is
recognised by its contents (devices and hazard points named as some demo version named them:
`DEMO-...`, or the `SYN-...` example hazard points of gis/examples that the demos before the
sample county imported; no API user but the demo's). Anything else is refused unless `--reset`
says to delete it anyway, and the refusal prints the command that does.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from geowarn import migrate
from geowarn.errors import ConfigurationError

DEMO_PREFIX = "DEMO-"
DEMO_USER = "demo"
MARK = "geowarn demo database: started afresh by every run of `geowarn demo`"
# The hazard points of gis/examples, which the demos before the sample county imported.
OLD_HAZARD_PREFIX = "SYN-"


def is_marked(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT obj_description('public'::regnamespace, 'pg_namespace')"
                       ).fetchone()
    return bool(row and row[0] == MARK)


def foreign_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows no demo wrote, per table (empty: the demo's database, or no schema yet)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if not exists or exists[0] is None or is_marked(conn):
        return {}
    checks = {
        "devices": "SELECT count(*) FROM devices WHERE device_id NOT LIKE 'DEMO-%'",
        "hazard points": "SELECT count(*) FROM hazard_points WHERE hazard_id NOT LIKE 'DEMO-%' "
                         f"AND hazard_id NOT LIKE '{OLD_HAZARD_PREFIX}%'",
        "API users": "SELECT count(*) FROM api_users WHERE username <> 'demo'",
    }
    out = {}
    for what, query in checks.items():
        try:
            row = conn.execute(query).fetchone()
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
                f"demo's ({what}). To delete it and run the demo, run:\n\n"
                "    bash dev.sh demo --reset\n\n"
                "(or `geowarn demo --reset`), or point GEOWARN_DATABASE_URL at an empty "
                "database (e.g. `createdb geowarn_demo`)")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute(sql.SQL("COMMENT ON SCHEMA public IS {}").format(sql.Literal(MARK)))
        conn.commit()
    return len(migrate.upgrade(db_url))
