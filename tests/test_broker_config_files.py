"""What `geowarn devices broker-config` writes serves a real Mosquitto started from it as
root (which drops to its own user before reading the files), and the command says what it
built. The largest legitimate message fits the shipped limits with room to spare."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from devices import credentials
from devices.catalogue import load_catalogue
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from geowarn.embedded import free_port
from geowarn.settings import get_settings, override_settings
from ingest.broker_config import SHIPPED_CONFIG, BrokerLimits, plugin_buildable
from tests.fixtures.services import skip_or_fail
from tests.test_broker_hardening import Client


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder the broker's user can enter (pytest's tmp_path sits below a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="geowarn-broker-config-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    raise AssertionError(f"mosquitto did not listen on {port}: {err}")


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # real uid
    raise AssertionError("no Uid line")


def test_files_serve_a_broker_started_as_root(
        conn: psycopg.Connection, db_url: str, public_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        skip_or_fail("this test starts Mosquitto as root, as an operator would; run as root")
    if not shutil.which("mosquitto") or plugin_buildable():
        skip_or_fail("needs mosquitto and the plugin headers (apt-get install mosquitto "
                     "mosquitto-dev libmosquitto-dev)")
    broker_user = pwd.getpwnam("mosquitto")
    add_device(conn, DeviceSpec("DEV-R", kind="rain_gauge"))
    secret = credentials.issue_secret(conn, "DEV-R")
    override_settings(database_url=db_url, mqtt_username=None, mqtt_password=None)
    port = free_port()

    assert main(["devices", "broker-config", str(public_dir), "--gateway-user", "gw",
                 "--listen", f"127.0.0.1:{port}"]) == 0
    out = capsys.readouterr().out
    assert "owner mosquitto, mode 0600" in out
    assert "plugin compiled: " in out and str(public_dir) in out
    assert f"listener 127.0.0.1:{port}" in out and "message_size_limit 524288" in out
    assert "warning" not in out, out
    for name in ("passwd", "acl"):
        st = (public_dir / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (broker_user.pw_uid, 0o600), name
    assert (public_dir / "data").stat().st_uid == broker_user.pw_uid
    conf = (public_dir / "mosquitto.conf").read_text()
    assert f"listener {port} 127.0.0.1\n" in conf and "user mosquitto\n" in conf
    assert "plugin_opt_service_users gw\n" in conf

    proc = subprocess.Popen(["mosquitto", "-c", str(public_dir / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
        assert _uid_of(proc.pid) == broker_user.pw_uid  # it dropped root, then read the files
        device = Client(port, "DEV-R", "DEV-R", secret)
        assert device.connack_code() == 0
        device.close()
        assert Client(port, "DEV-R", "DEV-R", "wrong").connack_code() != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert (public_dir / "data" / "mosquitto.db").exists()  # persistence was writable

    # A second run rebuilds nothing it does not have to, and says so.
    assert main(["devices", "broker-config", str(public_dir), "--gateway-user", "gw",
                 "--listen", f"127.0.0.1:{port}"]) == 0
    assert "plugin up to date (same source)" in capsys.readouterr().out


def test_broker_config_warns_about_what_would_stop_the_broker(
        conn: psycopg.Connection, db_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    override_settings(database_url=db_url, mqtt_username=None, mqtt_password=None)
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        assert main(["devices", "broker-config", str(tmp_path), "--listen",
                     f"127.0.0.1:{port}"]) == 0
    finally:
        busy.close()
    out = capsys.readouterr().out
    assert f"warning: something already listens on 127.0.0.1:{port}" in out
    if os.geteuid() == 0:  # pytest's folders are 0700: the broker's user cannot enter them
        assert "warning: user mosquitto cannot enter" in out
    assert main(["devices", "broker-config", str(tmp_path), "--listen", "1883"]) == 2
    assert "expected ADDRESS:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --listen is required: no silent default
        main(["devices", "broker-config", str(tmp_path)])


def test_the_largest_legitimate_message_fits_the_limits() -> None:
    """A backlog message at the contract's maximum (1000 readings) with the longest channel
    key, the longest timestamp form and long numbers is well under the payload limit."""
    longest_channel = max((c.name for k in load_catalogue().kinds.values()
                           for c in k.channels), key=len)
    reading = {"ts": datetime(2026, 12, 31, 23, 59, 59, 999999, UTC).isoformat()
               .replace("+00:00", "+08:00"),
               "channel": longest_channel, "value": -123456.789012345678,
               "unit": "mm/h"}
    message = json.dumps({"seq": 4294967295, "sent_at": reading["ts"],
                          "readings": [reading] * 1000}).encode()
    settings = get_settings()
    limits = BrokerLimits.for_fleet(max_payload_bytes=settings.max_payload_bytes, devices=1)
    assert 2 * len(message) <= settings.max_payload_bytes, len(message)
    assert limits.message_size_limit == 2 * settings.max_payload_bytes
    shipped = SHIPPED_CONFIG.read_text()
    assert f"\nmessage_size_limit {limits.message_size_limit}\n" in shipped
    assert f"\nmax_packet_size {limits.max_packet_size}\n" in shipped
