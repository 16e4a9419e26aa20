"""`geowarn db upgrade | info`."""

from __future__ import annotations

import argparse

from geowarn import migrate
from geowarn.db import database_url


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
    if info.timescale_version:
        print(f"timescaledb: active ({info.timescale_version})")
    elif info.timescale_available:
        print("timescaledb: available but not enabled (plain PostgreSQL path)")
    else:
        print("timescaledb: not installed (plain PostgreSQL path)")
    last = info.applied[-1] if info.applied else None
    print(f"migrations:  level {info.level:04d}"
          + (f" ({last[1]})" if last else "")
          + f", {len(info.pending)} pending")
    for m in info.pending:
        print(f"  pending {m.version:04d}_{m.name}")
    return 0
