"""National plain-value frames (no timestamps) and retained frames are stored once, however
often the broker serves them: through two gateways, through a takeover that redelivers what a
dead gateway committed but never acknowledged, and across reconnects (firmware-contracts/
national.md, "Time of untimestamped values").

The time of an untimestamped value is the broker's receive time, which GeoWarn's plugin
writes into the bound topic, so every copy carries the same time and the store's (channel,
time) key keeps one row."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg

from devices import credentials
from devices.registry import DeviceSpec, add_device
from ingest.gateway import Gateway
from tests.fixtures.broker import Broker, start_secured_broker
from tests.fixtures.gateway import wait_for_count
from tests.test_broker_hardening import Client

PASSWORD = "gateway-secret-for-national-tests"
COUNT_NAT = ("SELECT count(*), count(DISTINCT r.ts) FROM readings r JOIN channels c "
             "USING (channel_id) WHERE c.device_id = 'NAT-1'")


def _counts(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(COUNT_NAT).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _frame(value: float) -> bytes:
    return json.dumps({"NAT-1": {"L1_LF_1": value}}).encode()  # type 1: no timestamp


def _secured(conn: psycopg.Connection, tmp_path: Path,
             start_broker: Callable[..., Broker]) -> tuple[Broker, Client]:
    add_device(conn, DeviceSpec("NAT-1", profile="national", kind="crack_meter"))
    secret = credentials.issue_secret(conn, "NAT-1")
    broker, _ = start_secured_broker(conn, tmp_path / "broker", start_broker,
                                     gateway_password=PASSWORD)
    logger = Client(broker.port, "NAT-1", "NAT-1", secret, mqtt5=False)
    assert logger.connack_code() == 0
    return broker, logger


def test_plain_frames_through_two_gateways_are_stored_once(
        conn: psycopg.Connection, db_url: str, tmp_path: Path,
        start_broker: Callable[..., Broker], start_gateway: Callable[..., Gateway]) -> None:
    broker, logger = _secured(conn, tmp_path, start_broker)
    a = start_gateway(broker, name="gw-a", username="gw", password=PASSWORD)
    b = start_gateway(broker, name="gw-b", username="gw", password=PASSWORD)
    for i in range(20):
        logger.publish("$dp" if i % 2 else "$dp/NAT-1", _frame(i / 10))
    assert wait_for_count(db_url, COUNT_NAT, 20) == 20
    assert a.stats.wait_until("batches_committed_messages", 1, 10)
    # Both gateways took a share of the (shared, bound) national stream; nothing twice.
    assert a.stats.count("messages_received") + b.stats.count("messages_received") == 20
    assert min(a.stats.count("readings_stored"), b.stats.count("readings_stored")) > 0
    assert _counts(db_url) == (20, 20)
    logger.close()


def test_plain_frames_redelivered_through_a_takeover_are_stored_once(
        conn: psycopg.Connection, db_url: str, tmp_path: Path,
        start_broker: Callable[..., Broker], start_gateway: Callable[..., Gateway]) -> None:
    broker, logger = _secured(conn, tmp_path, start_broker)
    fast = {"takeover_after": timedelta(seconds=1)}
    a = start_gateway(broker, name="gw-a", username="gw", password=PASSWORD, **fast)
    b = start_gateway(broker, name="gw-b", username="gw", password=PASSWORD, **fast)
    # B dies after each commit, before its acknowledgement: what it stored stays unacked in
    # its broker session and is redelivered to whoever serves that session next.
    b.mqtt.ack = lambda tokens: 0  # type: ignore[method-assign]
    for i in range(20):
        logger.publish("$dp", _frame(i / 10))
    assert wait_for_count(db_url, COUNT_NAT, 20) == 20
    stored_by_b = b.stats.count("readings_stored")
    assert stored_by_b > 0
    b.stop()
    # A adopts B's session, and the broker redelivers B's unacknowledged frames to it.
    assert a.stats.wait_until("readings_duplicate", stored_by_b, timeout=60), \
        a.stats.snapshot()
    assert a.takeover is not None and "gw-b" in a.takeover.adopted
    assert _counts(db_url) == (20, 20)
    logger.close()


def test_a_retained_frame_is_stored_once_across_reconnects(
        conn: psycopg.Connection, db_url: str, tmp_path: Path,
        start_broker: Callable[..., Broker], start_gateway: Callable[..., Gateway]) -> None:
    broker, logger = _secured(conn, tmp_path, start_broker)
    gw = start_gateway(broker, name="gw-r", username="gw", password=PASSWORD)
    logger.publish("$dp", _frame(4.2), retain=True)
    assert wait_for_count(db_url, COUNT_NAT, 1) == 1
    for _ in range(2):  # the gateway reconnects: nothing is served again
        gw.stop()
        gw = start_gateway(broker, name="gw-r", username="gw", password=PASSWORD)
        logger.publish("$dp", _frame(0.5))  # a marker after the reconnect
        assert gw.stats.wait_until("readings_stored", 1, timeout=30)
    assert _counts(db_url) == (3, 3)
    # The plugin cleared the retain flag: the broker keeps nothing to serve again.
    probe = Client(broker.port, "gw:probe", "gw", PASSWORD)
    assert probe.connack_code() == 0 and probe.subscribe("gw/nat/#") == 1
    assert probe.messages.empty()
    probe.close()
    logger.close()


def test_a_retained_frame_is_stored_once_without_the_plugin(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway]) -> None:
    """A broker without GeoWarn's plugin keeps retained frames and serves them again on every
    subscription, with the retain flag set: the gateway ignores such copies."""
    add_device(conn, DeviceSpec("NAT-1", profile="national", kind="crack_meter"))
    gw = start_gateway(broker, name="gw-plain", group=None)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="NAT-1",
                      protocol=mqtt.MQTTv311)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    pub.publish("$dp", _frame(4.2), qos=1, retain=True).wait_for_publish(10)
    assert wait_for_count(db_url, COUNT_NAT, 1) == 1
    for _ in range(2):
        gw.stop()
        gw = start_gateway(broker, name="gw-plain", group=None)
        assert gw.stats.wait_until("retained_ignored", 1, timeout=30), gw.stats.snapshot()
    assert _counts(db_url) == (1, 1)
    pub.loop_stop()
    pub.disconnect()
