"""Embedded defaults for a machine with only Python.

When GEOWARN_DATABASE_URL is unset, a real PostgreSQL 16 from the PyPI package `pgserver` is
started with its data directory inside the project (`.geowarn/pgdata`). Run as root, pgserver
creates an OS user `pgserver` and loosens the permissions of the folders above its data
directory so that user can reach it; keeping the data directory inside the project confines that.

`start_mosquitto` runs a Mosquitto with a given configuration on a free local port: the demo's
broker (demo/broker.py), the tests' and the benchmarks' brokers.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from geowarn.errors import ConfigurationError
from geowarn.settings import get_settings

_db_url: str | None = None
_noticed = False
# pgserver asks platformdirs for a runtime directory it never uses; where XDG_RUNTIME_DIR is
# unset (root shells, containers, CI) platformdirs warns on every command.
_XDG_WARNING = ".*XDG_RUNTIME_DIR is not set"


def embedded_database_url() -> str:
    global _db_url
    if _db_url is not None:
        return _db_url
    warnings.filterwarnings("ignore", message=_XDG_WARNING)
    try:
        import pgserver
    except ImportError:
        raise ConfigurationError(
            "no database configured: set GEOWARN_DATABASE_URL=postgresql://... or install the "
            "embedded PostgreSQL with `pip install -e .[embedded]`"
        ) from None
    # pgserver narrates every start and stop at INFO; a command's output is not the place.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data = get_settings().data_dir / "pgdata"
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data), cleanup_mode="stop")
    _db_url = server.get_uri()
    return _db_url


def embedded_database_notice() -> None:
    """Tell the operator, once per process, that the embedded demo database is in use."""
    global _noticed
    if _noticed:
        return
    _noticed = True
    data = get_settings().data_dir / "pgdata"
    try:
        shown = data.relative_to(Path.cwd())
    except ValueError:
        shown = data
    print(f"geowarn: GEOWARN_DATABASE_URL is not set: using the embedded demo database in "
          f"{shown}", file=sys.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_mosquitto(config_text: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start Mosquitto with `config_text` plus a listener on `port`; wait until it listens."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise ConfigurationError("mosquitto is not installed (apt-get install mosquitto)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    # Started as root, Mosquitto 2 drops to the `mosquitto` user and then cannot write its
    # persistence file or read password files in a private temporary folder; a broker started
    # by GeoWarn (demo, tests) runs as whoever started it.
    as_user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    conf.write_text(
        config_text
        + f"\n{as_user}listener {port} 127.0.0.1\npersistence_location {workdir}/\n"
        + f"log_dest file {workdir}/mosquitto.log\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    if not _wait_for_port(port, 10):
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise ConfigurationError(f"mosquitto did not start on port {port}: {err}")
    return proc
