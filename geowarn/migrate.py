"""Versioned schema migrations: `geowarn db upgrade`.

Migrations are files in geowarn/migrations named `NNNN_name.sql` or `NNNN_name.py` (a module
with `upgrade(conn, ctx)` for steps that differ between TimescaleDB and plain PostgreSQL).
Each is applied once, in its own transaction, and recorded in `schema_migrations` with a
checksum. A session-level advisory lock makes concurrent upgrades from several processes
queue behind each other, so the schema ends up the same whoever runs first.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from geowarn import timescale
from geowarn.errors import MigrationError
from geowarn.settings import Settings, get_settings
from geowarn.timescale import TimescaleProbe

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")
# Any fixed 64-bit number works; it only has to be GeoWarn's own.
_LOCK_KEY = 0x6765_6F77_6172_6E01


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class MigrationContext:
    """What a Python migration may depend on."""

    timescale: bool
    settings: Settings


@dataclass(frozen=True)
class SchemaInfo:
    server_version: str
    timescale: TimescaleProbe
    applied: tuple[tuple[int, str], ...]
    pending: tuple[Migration, ...]

    @property
    def level(self) -> int:
        return self.applied[-1][0] if self.applied else 0


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        m = _NAME.match(path.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}: "
                                 f"{found[version].path.name}, {path.name}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def _ensure_bookkeeping(conn: psycopg.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def _apply(conn: psycopg.Connection, migration: Migration, ctx: MigrationContext) -> None:
    if migration.path.suffix == ".sql":
        conn.execute(migration.path.read_text())
        return
    spec = importlib.util.spec_from_file_location(
        f"geowarn_migration_{migration.version:04d}", migration.path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade(conn, ctx)


def upgrade(url: str, *, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration; returns those applied by this call."""
    migrations = discover(directory)
    applied_now: list[Migration] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            schema_exists = conn.execute(
                "SELECT to_regclass('readings') IS NOT NULL").fetchone() == (True,)
            timescale_on = timescale.enable(url, conn, get_settings().timescaledb,
                                            schema_exists=schema_exists)
            _ensure_bookkeeping(conn)
            done = {row[0]: row[1] for row in
                    conn.execute("SELECT version, checksum FROM schema_migrations")}
            ctx = MigrationContext(timescale=timescale_on, settings=get_settings())
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("migration %04d_%s changed after it was applied",
                                    migration.version, migration.name)
                    continue
                log.debug("applying migration %04d_%s", migration.version, migration.name)
                try:
                    with conn.transaction():
                        _apply(conn, migration, ctx)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum))
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                    ) from exc
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def info(url: str, *, directory: Path = MIGRATIONS_DIR) -> SchemaInfo:
    with psycopg.connect(url, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        applied: tuple[tuple[int, str], ...] = ()
        if exists and exists[0]:
            applied = tuple(conn.execute(
                "SELECT version, name FROM schema_migrations ORDER BY version").fetchall())
        done = {v for v, _ in applied}
        return SchemaInfo(
            server_version=server[0] if server else "?",
            timescale=timescale.probe(conn),
            applied=applied,
            pending=tuple(m for m in discover(directory) if m.version not in done),
        )
