"""A device cannot take a share of the gateways' stream or anyone's session, through a real
Mosquitto started with what `geowarn devices broker-config` generates (files, limits, plugin)."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from devices import credentials
from devices.registry import DeviceSpec, add_device
from ingest.broker_setup import BrokerSetup
from ingest.gateway import Gateway
from tests.fixtures.broker import Broker, start_secured_broker
from tests.fixtures.gateway import wait_for_count

NOT_AUTHORIZED = 0x87
GATEWAY_PASSWORD = "gateway-secret-for-hardening-tests"


class Client:
    """A paho-mqtt 2 client whose broker answers arrive on queues."""

    def __init__(self, port: int, client_id: str, username: str, password: str, *,
                 mqtt5: bool = True, will: str | None = None) -> None:
        proto = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        kwargs = {} if mqtt5 else {"clean_session": False}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=proto, **kwargs)  # type: ignore[arg-type]
        self.client.username_pw_set(username, password)
        if will:
            self.client.will_set(will, b'{"online": false}', qos=1, retain=True)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def connack_code(self) -> int:
        return int(self.connack.get(timeout=10).value)

    def subscribe(self, topic: str) -> int:
        self.client.subscribe(topic, qos=1)
        return int(self.subacks.get(timeout=10)[0].value)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Site:
    broker: Broker
    setup: BrokerSetup
    secrets: dict[str, str]
    clients: list[Client]

    def client(self, client_id: str, username: str, **kwargs: object) -> Client:
        c = Client(self.broker.port, client_id, username, self.secrets[username],
                   **kwargs)  # type: ignore[arg-type]
        self.clients.append(c)
        return c


@pytest.fixture
def site(conn: psycopg.Connection, tmp_path: Path,
         start_broker: Callable[..., Broker]) -> Iterator[Site]:
    for spec in (DeviceSpec("DEV-A", kind="crack_meter"), DeviceSpec("DEV-X", kind="rain_gauge"),
                 DeviceSpec("NAT-X", profile="national")):
        add_device(conn, spec)
    secrets = {d: credentials.issue_secret(conn, d) for d in ("DEV-A", "DEV-X", "NAT-X")}
    secrets["gw"] = GATEWAY_PASSWORD
    broker, setup = start_secured_broker(conn, tmp_path / "broker", start_broker,
                                         gateway_password=GATEWAY_PASSWORD)
    s = Site(broker, setup, secrets, [])
    yield s
    for c in s.clients:
        c.close()


def _telemetry(seq: int) -> bytes:
    ts = datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=seq)
    return json.dumps({"seq": seq, "readings": [
        {"ts": ts.isoformat(), "channel": "opening", "value": seq / 10}]}).encode()


def test_a_device_cannot_join_the_gateways_share(
        site: Site, db_url: str, start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(site.broker, username="gw", password=GATEWAY_PASSWORD)
    # Hijackers with their own valid credentials, MQTT 5 and 3.1.1.
    x5 = site.client("DEV-X", "DEV-X")
    n3 = site.client("NAT-X", "NAT-X", mqtt5=False)
    assert x5.connack_code() == 0 and n3.connack_code() == 0
    for topic in ("$share/geowarn/gw/v1/+/telemetry", "$share/geowarn/gw/nat/+/dp/+",
                  "$share/other/gw/v1/DEV-X/cmd/+", "gw/v1/+/telemetry", "gw/v1/DEV-A/cmd/+",
                  "#", "gw/v1/DEV-X/#", "$creq/+/+"):
        assert x5.subscribe(topic) == NOT_AUTHORIZED, topic
    for topic in ("$share/geowarn/gw/v1/+/telemetry", "$share/geowarn/gw/nat/+/dp/+"):
        assert n3.subscribe(topic) == 0x80, topic  # MQTT 3.1.1: SUBACK failure
    assert x5.subscribe("gw/v1/DEV-X/cmd/+") == 1  # its own commands: granted
    assert n3.subscribe("$creq/NAT-X/+") == 1

    a = site.client("DEV-A", "DEV-A")
    assert a.connack_code() == 0
    for seq in range(100):
        a.publish("gw/v1/DEV-A/telemetry", _telemetry(seq))
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 100) == 100
    assert gw.stats.count("readings_stored") == 100
    assert x5.messages.empty() and n3.messages.empty()
    assert 'refused subscription of device "DEV-X" to "$share/geowarn/gw/v1/+/telemetry"' \
        in site.broker.log


def test_no_one_takes_another_client_id(
        site: Site, db_url: str, start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(site.broker, username="gw", password=GATEWAY_PASSWORD)
    victim = site.client("DEV-A", "DEV-A", will="gw/v1/DEV-A/presence")
    assert victim.connack_code() == 0
    assert victim.subscribe("gw/v1/DEV-A/cmd/+") == 1
    gateway_id = gw.mqtt.client_id
    assert gateway_id == "gw:test-gw"  # a service id: username:instance

    for client_id in (gateway_id, "test-gw", "gw", "DEV-A", "NAT-X", "", "DEV-X:1"):
        intruder = site.client(client_id, "DEV-X")
        assert intruder.connack_code() in (NOT_AUTHORIZED, 0x86, 0x85), client_id
    # A service account may not take a device's id either.
    assert site.client("DEV-A", "gw").connack_code() == NOT_AUTHORIZED

    # The victims are still connected with their sessions: nobody was kicked or lost a will.
    assert victim.disconnects.empty() and gw.mqtt.connected.is_set()
    assert gw.mqtt.wait_for_connections(2, timeout=0.5) is False  # never reconnected
    gw.mqtt.publish("gw/v1/DEV-A/cmd/c-1", b'{"command": "reboot"}')
    msg = victim.messages.get(timeout=10)
    assert msg.topic == "gw/v1/DEV-A/cmd/c-1"
    victim.publish("gw/v1/DEV-A/telemetry", _telemetry(1))
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 1) == 1
    assert victim.disconnects.empty()  # so its last will ("offline") never fired
    assert 'refused client id "gw:test-gw" for user "DEV-X"' in site.broker.log
    assert site.client("DEV-X", "DEV-X").connack_code() == 0  # its own id works


def test_a_flooding_device_is_cut_off_and_others_are_not(
        conn: psycopg.Connection, db_url: str, tmp_path: Path,
        start_broker: Callable[..., Broker], start_gateway: Callable[..., Gateway]) -> None:
    """The plugin's per-device token bucket (here 20 messages, refilled at 1/s; generated
    defaults: 3000 and 10/s) refuses a flood, then the broker closes that connection."""
    for spec in (DeviceSpec("DEV-A", kind="crack_meter"), DeviceSpec("DEV-X", kind="crack_meter")):
        add_device(conn, spec)
    secrets = {d: credentials.issue_secret(conn, d) for d in ("DEV-A", "DEV-X")}
    broker, setup = start_secured_broker(conn, tmp_path / "broker", start_broker,
                                         gateway_password=GATEWAY_PASSWORD)
    conf = setup.conf.read_text()
    assert "\nplugin_opt_device_rate 10,3000\n" in conf
    broker.stop()
    broker.config_text = broker.config_text.replace("plugin_opt_device_rate 10,3000",
                                                    "plugin_opt_device_rate 1,20")
    broker.start()
    start_gateway(broker, username="gw", password=GATEWAY_PASSWORD)
    flooder = Client(broker.port, "DEV-X", "DEV-X", secrets["DEV-X"])
    honest = Client(broker.port, "DEV-A", "DEV-A", secrets["DEV-A"])
    assert flooder.connack_code() == 0 and honest.connack_code() == 0
    for seq in range(200):
        flooder.client.publish("gw/v1/DEV-X/telemetry", _telemetry(seq), qos=1)
    flooder.disconnects.get(timeout=10)  # refused past its burst, then disconnected
    flooder.client.loop_stop()  # and it does not come back during the test
    for seq in range(15):  # within its own burst: another device's flood costs it nothing
        honest.publish("gw/v1/DEV-A/telemetry", _telemetry(seq))
    count = ("SELECT count(*) FROM readings JOIN channels USING (channel_id) "
             "WHERE device_id = %s")
    assert wait_for_count(db_url, count, 15, params=("DEV-A",)) == 15
    flooded = wait_for_count(db_url, count, 0, params=("DEV-X",))
    assert 20 <= flooded < 200, flooded
    assert 'refused a publish of device "DEV-X" over its rate (1/s, burst 20)' in broker.log
    assert honest.disconnects.empty()
    honest.close()
