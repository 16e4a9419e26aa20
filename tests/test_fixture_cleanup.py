"""The test fixtures clean up after runs that could not: a killed or crashed test process
leaves its databases (geowarn_tpl_<pid>, geowarn_t_<pid>_<n>, ...), and the next session
drops those of processes that are gone, never those of a live (parallel) run."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from tests.fixtures.database import create_database, drop_database, drop_stale_databases


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (name,)).fetchone() is not None


def test_databases_of_dead_test_processes_are_dropped(pg_admin_url: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process
    live = os.getppid()  # alive: whoever started this test run
    dead_names = [f"geowarn_tpl_{gone.pid}", f"geowarn_t_{gone.pid}_3"]
    live_name = f"geowarn_t_{live}_7"
    for name in (*dead_names, live_name):
        drop_database(pg_admin_url, name)
        create_database(pg_admin_url, name)
    try:
        dropped = drop_stale_databases(pg_admin_url)
        assert set(dead_names) <= set(dropped)
        assert not any(_exists(pg_admin_url, n) for n in dead_names)
        assert _exists(pg_admin_url, live_name) and live_name not in dropped
    finally:
        for name in (*dead_names, live_name):
            drop_database(pg_admin_url, name)
