"""Broker credentials and ACL generated from the registry, enforced by a real Mosquitto."""

from __future__ import annotations

import queue
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from devices import broker_acl, credentials, registry
from devices.registry import DeviceSpec
from geowarn.errors import InvalidInput
from ingest.broker_config import build_plugin, gateway_broker_config, plugin_buildable
from tests.fixtures.services import skip_or_fail

NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86


class Peer:
    """A paho-mqtt 2 client (MQTT 5) whose broker answers arrive as events."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.username_pw_set(username, password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.pubacks: dict[int, queue.Queue[ReasonCode]] = {}
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_publish = lambda c, u, mid, rc, props: self._ack(mid).put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self._lock = threading.Lock()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _ack(self, mid: int) -> queue.Queue[ReasonCode]:
        with self._lock:
            return self.pubacks.setdefault(mid, queue.Queue())

    def connected(self) -> ReasonCode:
        return self.connack.get(timeout=10)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return self._ack(info.mid).get(timeout=10).value

    def publish_refused(self, topic: str, payload: bytes) -> None:
        """Publish where the ACL forbids it: Mosquitto 2.0 answers PUBACK 0x87 Not authorized
        and then closes the connection; paho reconnects and the session (clean start first
        time only) keeps its subscriptions."""
        assert self.publish(topic, payload) == NOT_AUTHORIZED
        self.disconnects.get(timeout=10)
        assert not self.connected().is_failure

    def subscribe(self, topic: str) -> int:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=10)[0].value

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def fleet(conn, tmp_path: Path, start_broker):
    for spec in (DeviceSpec("DEV-A", kind="crack_meter"), DeviceSpec("DEV-B", kind="rain_gauge"),
                 DeviceSpec("DEV-OLD", kind="rain_gauge"),
                 DeviceSpec("NAT-1", profile="national"), DeviceSpec("NAT-2", profile="national")):
        registry.add_device(conn, spec)
    secrets = {d: credentials.issue_secret(conn, d)
               for d in ("DEV-A", "DEV-B", "DEV-OLD", "NAT-1", "NAT-2")}
    registry.retire_device(conn, "DEV-OLD")
    conf_dir = tmp_path / "broker"
    conf_dir.mkdir()
    files = broker_acl.write_broker_config(conn, conf_dir, gateway_user="gw")
    assert files.new_gateway_secret is not None and files.devices == 4
    secrets["gw"] = files.new_gateway_secret
    missing = plugin_buildable()
    if missing:
        skip_or_fail(f"the GeoWarn Mosquitto plugin cannot be built here: install {missing}")
    broker = start_broker(gateway_broker_config(
        password_file=files.passwd, acl_file=files.acl,
        plugin=build_plugin(conf_dir).path, service_users=("gw",)))
    peers: list[Peer] = []

    def peer(username: str, password: str | None = None) -> Peer:
        p = Peer(broker.port, username, password or secrets[username])
        peers.append(p)
        return p

    yield peer, files
    for p in peers:
        p.close()


def test_files_are_private_and_hold_no_secret(conn, tmp_path, fleet):
    _, files = fleet
    for path in (files.passwd, files.acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = [line.split(":")[0] for line in files.passwd.read_text().splitlines()]
    assert users == ["gw", "DEV-A", "DEV-B", "NAT-1", "NAT-2"]  # no retired DEV-OLD
    # Regenerating keeps the gateway account and creates no new secret.
    again = broker_acl.write_broker_config(conn, files.passwd.parent, gateway_user="gw")
    assert again.new_gateway_secret is None
    with pytest.raises(InvalidInput, match="also a device id"):
        broker_acl.write_broker_config(conn, files.passwd.parent, gateway_user="DEV-A")


def test_devices_speak_only_as_themselves(fleet):
    peer, _ = fleet
    gw = peer("gw")
    assert not gw.connected().is_failure
    for topic in ("gw/v1/+/telemetry", "gw/nat/#"):
        assert gw.subscribe(topic) < 0x80
    a = peer("DEV-A")
    assert not a.connected().is_failure

    # Refused first, then allowed: the broker handles A's publishes in order, so if the refused
    # one had been forwarded the gateway would receive it before the allowed one.
    a.publish_refused("gw/v1/DEV-B/telemetry", b"forged")
    assert a.publish("gw/v1/DEV-A/telemetry", b"genuine") == 0
    msg = gw.messages.get(timeout=10)
    assert (msg.topic, msg.payload) == ("gw/v1/DEV-A/telemetry", b"genuine")

    # Mosquitto's ACL file grants a SUBACK for any filter (and applies the read ACL to every
    # message it would deliver); GeoWarn's plugin refuses a device's subscription outside its
    # own command topics. B's command, published first, must never reach A.
    assert a.subscribe("gw/v1/+/cmd/+") == NOT_AUTHORIZED
    assert a.subscribe("gw/v1/DEV-A/cmd/+") < 0x80
    assert gw.publish("gw/v1/DEV-B/cmd/c1", b"for B") < 0x80  # 0x10: nobody subscribed
    assert gw.publish("gw/v1/DEV-A/cmd/c2", b"for A") == 0
    msg = a.messages.get(timeout=10)
    assert (msg.topic, msg.payload) == ("gw/v1/DEV-A/cmd/c2", b"for A")

    n1 = peer("NAT-1")
    assert not n1.connected().is_failure
    n1.publish_refused("$dp/NAT-2", b"forged")
    n1.publish_refused("gw/v1/DEV-A/telemetry", b"forged")
    assert n1.publish("$dp/NAT-1", b"genuine") == 0
    msg = gw.messages.get(timeout=10)
    # The plugin binds it to the authenticated logger and stamps the broker's receive time.
    assert msg.topic.startswith("gw/nat/NAT-1/dp/") and msg.payload == b"genuine"
    assert n1.subscribe("$creq/+/+") == NOT_AUTHORIZED
    assert n1.subscribe("$creq/NAT-1/+") < 0x80
    assert gw.publish("$creq/NAT-2/7", b"for NAT-2") < 0x80
    assert gw.publish("$creq/NAT-1/8", b"for NAT-1") == 0
    msg = n1.messages.get(timeout=10)
    assert (msg.topic, msg.payload) == ("$creq/NAT-1/8", b"for NAT-1")
    assert gw.messages.empty() and a.messages.empty() and n1.messages.empty()


def test_wrong_password_and_retired_device_are_refused_at_connect(fleet):
    peer, _ = fleet
    assert peer("DEV-A", "not-the-secret").connected().value in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    assert peer("DEV-OLD").connected().is_failure
    assert peer("nobody", "x").connected().is_failure


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="mosquitto_passwd missing")
def test_python_verifies_hashes_made_by_mosquitto_passwd(tmp_path):
    secret = credentials.generate_secret()
    path = tmp_path / "pw"
    path.write_text(f"dev:{secret}\n")
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True)
    stored = path.read_text().strip().split(":", 1)[1]
    assert credentials.verify_secret(secret, stored)
    assert not credentials.verify_secret(secret + "!", stored)


def test_cli_broker_config_prints_gateway_password_once(db_url, conn, tmp_path, capsys):
    from geowarn.cli import main
    from geowarn.settings import override_settings

    override_settings(database_url=db_url, mqtt_username=None, mqtt_password=None)

    registry.add_device(conn, DeviceSpec("DEV-C", kind="crack_meter"))
    credentials.issue_secret(conn, "DEV-C")
    out_dir = tmp_path / "conf"
    out_dir.mkdir()
    assert main(["devices", "broker-config", str(out_dir), "--gateway-user", "gwx",
                 "--listen", "127.0.0.1:1883"]) == 0
    out = capsys.readouterr().out
    secret = out.split("GEOWARN_MQTT_PASSWORD to it): ")[1].strip()
    stored = dict(line.split(":", 1) for line in (out_dir / "passwd").read_text().splitlines())
    assert credentials.verify_secret(secret, stored["gwx"]) and "DEV-C" in stored
    assert "user gwx" in (out_dir / "acl").read_text()
    assert main(["devices", "broker-config", str(out_dir), "--gateway-user", "gwx",
                 "--listen", "127.0.0.1:1883"]) == 0
    assert "shown once" not in capsys.readouterr().out
    assert main(["devices", "broker-config", str(tmp_path / "missing"),
                 "--listen", "127.0.0.1:1883"]) == 2
    assert "is not a directory" in capsys.readouterr().err
