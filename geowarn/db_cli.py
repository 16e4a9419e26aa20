"""`geowarn db upgrade | info`."""

from __future__ import annotations

import argparse

from geowarn import migrate
from geowarn.db import database_url
from geowarn.timescale import preload_line


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema: upgrade, info")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply pending migrations (idempotent)")
    up.set_defaults(func=_upgrade)
    inf = dbsub.add_parser("info", help="server version, TimescaleDB, migration level")
    inf.set_defaults(func=_info)


def _upgrade(args: argparse.Namespace) -> int:
    applied = migrate.upgrade(database_url())
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
    else:
        print("schema is up to date")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = migrate.info(database_url())
    print(f"server:      PostgreSQL {info.server_version}")
    ts = info.timescale
    if ts.active_version:
        print(f"timescaledb: active ({ts.active_version})")
    elif ts.available_version and ts.preloaded is False:
        print(f"timescaledb: installed ({ts.available_version}) but not preloaded: add "
              f"{preload_line(ts)} to postgresql.conf and restart PostgreSQL (plain "
              "PostgreSQL path until then)")
    elif ts.available_version:
        print(f"timescaledb: available ({ts.available_version}), not enabled in this "
              "database (plain PostgreSQL path; `geowarn db upgrade` enables it on a new "
              "database)")
    else:
        print("timescaledb: not installed (plain PostgreSQL path)")
    last = info.applied[-1] if info.applied else None
    print(f"migrations:  level {info.level:04d}"
          + (f" ({last[1]})" if last else "")
          + f", {len(info.pending)} pending")
    for m in info.pending:
        print(f"  pending {m.version:04d}_{m.name}")
    return 0
