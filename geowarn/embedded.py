"""Embedded defaults for a machine with only Python.

When GEOWARN_DATABASE_URL is unset, a real PostgreSQL 16 from the PyPI package `pgserver` is
started with its data directory inside the project (`.geowarn/pgdata`). Run as root, pgserver
creates an OS user `pgserver` and loosens the permissions of the folders above its data
directory so that user can reach it; keeping the data directory inside the project confines that.

When GEOWARN_MQTT_URL is unset, a Mosquitto is started on a free local port if the binary is
installed, else an in-process amqtt broker (MQTT 3.1.1, QoS 0/1 only, 3-5x slower).
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from geowarn.errors import ConfigurationError
from geowarn.settings import get_settings

_db_url: str | None = None


def embedded_database_url() -> str:
    global _db_url
    if _db_url is not None:
        return _db_url
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


@dataclass(frozen=True)
class EmbeddedBroker:
    url: str
    name: str  # "mosquitto" or "amqtt"
    mqtt5: bool  # amqtt speaks MQTT 3.1.1 only


def start_embedded_broker(*, prefer_mosquitto: bool = True) -> EmbeddedBroker:
    """Start a local broker for the demo (stopped at exit): Mosquitto with the shipped
    configuration when it is installed and preferred, else the in-process amqtt broker."""
    port = free_port()
    if prefer_mosquitto and (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        from ingest.broker_config import gateway_broker_config

        workdir = Path(tempfile.mkdtemp(prefix="geowarn-mosquitto-"))
        proc = start_mosquitto(gateway_broker_config(), port, workdir)
        atexit.register(proc.terminate)
        return EmbeddedBroker(f"mqtt://127.0.0.1:{port}", "mosquitto", mqtt5=True)
    _start_amqtt(port)
    return EmbeddedBroker(f"mqtt://127.0.0.1:{port}", "amqtt", mqtt5=False)


def embedded_mqtt_url() -> str:
    """Start a local broker for the demo and return its URL (stopped at exit)."""
    return start_embedded_broker().url


def _start_amqtt(port: int) -> None:
    """Run an amqtt broker on `port` in a daemon thread of this process.

    Only the anonymous-auth plugin is loaded: the default set adds $SYS publishing and packet
    logging nobody reads here. broker.start() returns once the listener is bound, so no port
    probe is needed (a probe's bare connect would be logged by amqtt as a broken client).
    amqtt speaks MQTT 3.1.1 only and refuses topics that start with "$", so the national
    profile ($dp) cannot pass through it: the demo sends native-profile traffic there. It
    also did not deliver QoS 1 messages queued for a clean_session=False client that was
    offline (amqtt 0.12.1, measured): fine for the demo, whose gateway subscribes before
    anything is published, but not a broker to deploy.
    """
    try:
        import asyncio
        import threading

        from amqtt.broker import Broker
    except ImportError:
        raise ConfigurationError(
            "no broker configured and mosquitto is not installed: set GEOWARN_MQTT_URL, "
            "apt-get install mosquitto, or pip install -e .[embedded]"
        ) from None
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
            "allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True, name="amqtt").start()

    async def _start() -> Broker:
        # Constructed inside the loop: amqtt creates asyncio objects bound to it.
        broker = Broker(config, loop=loop)
        await broker.start()
        return broker

    try:
        asyncio.run_coroutine_threadsafe(_start(), loop).result(timeout=10)
    except Exception as exc:  # amqtt raises its own BrokerError, OSError, or a timeout
        loop.call_soon_threadsafe(loop.stop)
        raise ConfigurationError(f"in-process MQTT broker did not start on port {port}: "
                                 f"{exc}") from exc
