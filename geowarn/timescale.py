"""Whether `geowarn db upgrade` builds the schema on TimescaleDB: GEOWARN_TIMESCALEDB.

  auto     use TimescaleDB when the server can load it; plain PostgreSQL when it is not
           installed. Installed but not preloaded is an error that says how to fix it.
  require  as auto, but a server without TimescaleDB is an error too.
  off      never enable it (a database that already has the extension keeps using it:
           its tables were built on it).

TimescaleDB must be loaded when the server starts (`shared_preload_libraries`). On a server
where the package is installed but not preloaded, the usual state right after installing it,
CREATE EXTENSION ends the session with FATAL. So the state is probed first
(pg_available_extensions, shared_preload_libraries), and the extension is created on a
connection of its own, so that a FATAL the probe could not foresee (the setting is readable
by superusers only) still cannot take the migration's connection down with it.

A schema built on plain PostgreSQL stays plain: enabling the extension under existing plain
tables would make the code take the TimescaleDB path on tables that are not hypertables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import psycopg

from geowarn.errors import ConfigurationError

log = logging.getLogger(__name__)

TimescaleMode = Literal["auto", "require", "off"]
OFF_HINT = "or set GEOWARN_TIMESCALEDB=off to use the plain PostgreSQL path"


class TimescaleUnusable(ConfigurationError):
    """TimescaleDB is wanted (auto or require) but cannot be enabled; the message says why
    and what to change."""


@dataclass(frozen=True)
class TimescaleProbe:
    """What the server says about TimescaleDB, before anything is tried."""

    active_version: str | None  # the extension's version in this database, if created
    available_version: str | None  # the version the server could create, if installed
    preload: str | None  # shared_preload_libraries; None when this role may not read it
    config_file: str | None = None  # postgresql.conf, when this role may read its path

    @property
    def preloaded(self) -> bool | None:
        if self.preload is None:
            return None
        names = [part.strip().strip('"').rsplit("/", 1)[-1]
                 for part in self.preload.split(",")]
        return "timescaledb" in names


def probe(conn: psycopg.Connection) -> TimescaleProbe:
    """Read the TimescaleDB state of the server and database `conn` is on (autocommit)."""
    row = conn.execute(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
        "(SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    active, available = (row[0], row[1]) if row else (None, None)
    return TimescaleProbe(active, available, _show(conn, "shared_preload_libraries"),
                          _show(conn, "config_file"))


def _show(conn: psycopg.Connection, setting: str) -> str | None:
    try:
        row = conn.execute(f"SHOW {setting}").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return str(row[0]) if row else None


def preload_line(state: TimescaleProbe) -> str:
    """The postgresql.conf line that preloads TimescaleDB, keeping what is preloaded now."""
    current = [p.strip() for p in (state.preload or "").split(",") if p.strip()]
    return "shared_preload_libraries = '" + ",".join([*current, "timescaledb"]) + "'"


def not_preloaded_message(state: TimescaleProbe) -> str:
    where = f" ({state.config_file})" if state.config_file else ""
    version = f" {state.available_version}" if state.available_version else ""
    return (f"TimescaleDB{version} is installed on this PostgreSQL server but not preloaded, "
            f"so it cannot be enabled. Add this line to postgresql.conf{where}:\n"
            f"    {preload_line(state)}\nrestart PostgreSQL, and run `geowarn db upgrade` "
            f"again; {OFF_HINT}.")


def decide(state: TimescaleProbe, mode: TimescaleMode, *, schema_exists: bool) -> bool:
    """Whether the schema is (to be) built on TimescaleDB; raises TimescaleUnusable when it
    is wanted and cannot be. Pure: `enable` does the I/O."""
    if state.active_version:
        return True
    if mode == "off":
        return False
    if state.available_version is None:
        if mode == "require":
            raise TimescaleUnusable(
                "GEOWARN_TIMESCALEDB=require, but the timescaledb extension is not installed "
                f"on this PostgreSQL server; install it (the timescaledb package for this "
                f"PostgreSQL version), {OFF_HINT}")
        return False
    if schema_exists:
        # Existing plain tables: see the module docstring.
        if mode == "require":
            raise TimescaleUnusable(
                "GEOWARN_TIMESCALEDB=require, but this database's schema was built on plain "
                "PostgreSQL; migrate its data into a new database created with TimescaleDB, "
                f"{OFF_HINT}")
        log.info("TimescaleDB is installed but this database's schema was built on plain "
                 "PostgreSQL; it stays on the plain path")
        return False
    if state.preloaded is False:
        raise TimescaleUnusable(not_preloaded_message(state))
    return True


def enable(url: str, conn: psycopg.Connection, mode: TimescaleMode, *,
           schema_exists: bool) -> bool:
    """Decide for the database at `url` (`conn` is a connection to it) and create the
    extension if needed. Returns whether the schema is on TimescaleDB."""
    state = probe(conn)
    if not decide(state, mode, schema_exists=schema_exists) or state.active_version:
        return bool(state.active_version)
    try:
        with psycopg.connect(url, autocommit=True) as own:
            own.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.OperationalError as exc:
        # The session died (FATAL): not preloaded, on a server whose setting we may not read.
        raise TimescaleUnusable(f"{not_preloaded_message(state)}\n(the server said: "
                                f"{str(exc).strip()})") from exc
    except psycopg.Error as exc:
        raise TimescaleUnusable(
            f"TimescaleDB is installed but could not be enabled: {str(exc).strip()}. A "
            "superuser can run `CREATE EXTENSION timescaledb` in this database; "
            f"{OFF_HINT}.") from exc
    log.info("enabled TimescaleDB %s", state.available_version)
    return True
