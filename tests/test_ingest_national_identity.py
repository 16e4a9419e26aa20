"""National loggers all publish on `$dp` with their id inside the JSON. Through GeoWarn's
broker configuration (`geowarn devices broker-config`: passwords, ACL and the Mosquitto plugin)
the gateway learns who really spoke, so a logger cannot write readings under another's id."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices import credentials
from devices.messages import Reason
from devices.registry import DeviceSpec, add_device
from geowarn.cli import main
from ingest.broker_config import plugin_buildable
from ingest.gateway import Gateway
from tests.fixtures.broker import Broker, for_test_broker
from tests.fixtures.gateway import wait_for_count
from tests.fixtures.services import skip_or_fail


def _pub(broker: Broker, user: str, secret: str, topic: str, payload: dict) -> None:
    # Client id = username: the plugin refuses any other client id for a device.
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-i", user, "-u", user,
                    "-P", secret, "-q", "1", "-t", topic, "-m", json.dumps(payload)],
                   check=True, timeout=10)


def test_a_logger_cannot_speak_for_another_on_dp(
        conn: psycopg.Connection, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        start_broker: Callable[..., Broker], start_gateway: Callable[..., Gateway],
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = plugin_buildable()
    if missing:
        skip_or_fail(f"the Mosquitto plugin cannot be built here: install {missing}")
    if not shutil.which("mosquitto_pub"):
        skip_or_fail("mosquitto_pub is not installed (apt-get install mosquitto-clients)")
    for device_id in ("NAT-A", "NAT-B"):
        add_device(conn, DeviceSpec(device_id=device_id, profile="national"))
    secrets = {d: credentials.issue_secret(conn, d) for d in ("NAT-A", "NAT-B")}

    conf_dir = tmp_path / "broker"
    conf_dir.mkdir()
    monkeypatch.setenv("GEOWARN_MQTT_PASSWORD", "gateway-secret-for-tests")
    from geowarn.settings import override_settings

    override_settings(database_url=db_url)
    assert main(["devices", "broker-config", str(conf_dir), "--gateway-user", "gw",
                 "--listen", "127.0.0.1:1883"]) == 0
    out = capsys.readouterr().out
    assert "gateway-secret-for-tests" not in out  # a given password is never echoed
    conf = (conf_dir / "mosquitto.conf").read_text()
    assert "plugin " in conf and "acl_file " in conf
    broker = start_broker(for_test_broker(conf))
    start_gateway(broker, username="gw", password="gateway-secret-for-tests")

    ts = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _pub(broker, "NAT-A", secrets["NAT-A"], "$dp", {"NAT-A": {"L1_LF_1": {ts: 1.25}}})
    # NAT-A claims to be NAT-B: refused, and the refusal names both.
    _pub(broker, "NAT-A", secrets["NAT-A"], "$dp", {"NAT-B": {"L1_LF_1": {ts: 9.99}}})
    _pub(broker, "NAT-B", secrets["NAT-B"], "$dp", {"NAT-B": {"L1_LF_1": {ts: 2.5}}})

    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 2) == 2
    assert wait_for_count(db_url, "SELECT count(*) FROM dead_letters", 1) == 1
    with psycopg.connect(db_url) as c:
        rows = sorted(c.execute("SELECT c.device_id, r.value FROM readings r "
                                "JOIN channels c USING (channel_id)").fetchall())
        letters = c.execute("SELECT reason, device_id, detail, topic FROM dead_letters"
                            ).fetchall()
    assert rows == [("NAT-A", 1.25), ("NAT-B", 2.5)]
    (reason, device_id, detail, topic), = letters
    assert reason == Reason.TOPIC_MISMATCH and device_id == "NAT-A"
    assert "NAT-B" in detail and topic.startswith("gw/nat/NAT-A/dp/")
